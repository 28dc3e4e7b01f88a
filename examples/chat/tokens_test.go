package main

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// TestTaggedClientCaught: a delivery service that shows bob an issuer key
// of his own (to recognize his tokens) is caught by bob when alice's next
// message arrives with her key-view tag, and alice is caught likewise.
func TestTaggedClientCaught(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dsStore, err := openStore(dir, "delivery-service")
	require.NoError(t, err)
	ds, err := newDeliveryService(dsStore)
	require.NoError(t, err)
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	clients := map[string]*client{}
	for _, n := range []string{"alice", "bob"} {
		st, err := openStore(dir, n)
		require.NoError(t, err)
		c, err := newClient(ds, cs, n, st)
		require.NoError(t, err)
		clients[n] = c
		require.NoError(t, c.refillTokens())
	}
	alice, bob := clients["alice"], clients["bob"]
	require.NoError(t, bob.publishKeyPackage(ctx))
	require.NoError(t, alice.createGroup(ctx))
	kps, err := alice.tr.FetchKeyPackages(ctx, []byte("bob"))
	require.NoError(t, err)
	if _, err := alice.commit(ctx, &mls.CommitOptions{Add: kps}); err != nil {
		t.Fatal(err)
	}
	ref, err := kps[0].Ref()
	require.NoError(t, err)
	require.NoError(t, bob.joinFromWelcome(ctx, ref))
	require.NoError(t, refillAll(clients))
	// Honest server: they agree.
	require.NoError(t, alice.send(ctx, "hello"))
	require.NoError(t, bob.receive(ctx), "honest server")

	// The server now shows bob the directory of another issuer key: a key
	// for the right period, which bob's own checks cannot tell apart.
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	mem := sealedsender.NewMemoryStore()
	tagger, err := sealedsender.NewPrivacyPassIssuer(master, ds.challenge(), &sealedsender.IssuerConfig{Spent: mem, Quotas: mem})
	require.NoError(t, err)
	tagDir, err := tagger.Keys()
	require.NoError(t, err)
	bob.wallet.pp, err = sealedsender.NewPrivacyPassClient(tagDir, ds.challenge(), nil)
	require.NoError(t, err)
	require.NoError(t, alice.send(ctx, "are you tagged?"))
	if err := bob.receive(ctx); !errors.Is(err, sealedsender.ErrKeyMismatch) {
		t.Fatalf("bob, tagged, reading alice: %v, want ErrKeyMismatch", err)
	}
	require.NoError(t, bob.send(ctx, "yes"))
	if err := alice.receive(ctx); !errors.Is(err, sealedsender.ErrKeyMismatch) {
		t.Fatalf("alice reading tagged bob: %v, want ErrKeyMismatch", err)
	}
}
