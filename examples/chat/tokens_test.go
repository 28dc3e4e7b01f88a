package main

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

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
	if err != nil {
		t.Fatal(err)
	}
	ds, err := newDeliveryService(dsStore)
	if err != nil {
		t.Fatal(err)
	}
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	clients := map[string]*client{}
	for _, n := range []string{"alice", "bob"} {
		st, err := openStore(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newClient(ds, cs, n, st)
		if err != nil {
			t.Fatal(err)
		}
		clients[n] = c
		if err := c.refillTokens(); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob := clients["alice"], clients["bob"]
	if err := bob.publishKeyPackage(ctx); err != nil {
		t.Fatal(err)
	}
	if err := alice.createGroup(ctx); err != nil {
		t.Fatal(err)
	}
	kps, err := alice.tr.FetchKeyPackages(ctx, []byte("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.commit(ctx, &mls.CommitOptions{Add: kps}); err != nil {
		t.Fatal(err)
	}
	ref, err := kps[0].Ref()
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.joinFromWelcome(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := refillAll(clients); err != nil {
		t.Fatal(err)
	}
	// Honest server: they agree.
	if err := alice.send(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := bob.receive(ctx); err != nil {
		t.Fatalf("honest server: %v", err)
	}

	// The server now shows bob the directory of another issuer key: a key
	// for the right period, which bob's own checks cannot tell apart.
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	mem := sealedsender.NewMemoryStore()
	tagger, err := sealedsender.NewPrivacyPassIssuer(master, ds.challenge(), &sealedsender.IssuerConfig{Spent: mem, Quotas: mem})
	if err != nil {
		t.Fatal(err)
	}
	tagDir, err := tagger.Keys()
	if err != nil {
		t.Fatal(err)
	}
	bob.wallet.pp, err = sealedsender.NewPrivacyPassClient(tagDir, ds.challenge(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.send(ctx, "are you tagged?"); err != nil {
		t.Fatal(err)
	}
	if err := bob.receive(ctx); !errors.Is(err, sealedsender.ErrKeyMismatch) {
		t.Fatalf("bob, tagged, reading alice: %v, want ErrKeyMismatch", err)
	}
	if err := bob.send(ctx, "yes"); err != nil {
		t.Fatal(err)
	}
	if err := alice.receive(ctx); !errors.Is(err, sealedsender.ErrKeyMismatch) {
		t.Fatalf("alice reading tagged bob: %v, want ErrKeyMismatch", err)
	}
}
