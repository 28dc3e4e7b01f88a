package mls_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/mls"
)

// ExampleGroupStore shows the persistence protocol with a store: save
// after every change, store a commit before sending it and merge it once
// the delivery service accepted it, and delete the KeyPackage private key
// in the same step that saves the joined group.
func ExampleGroupStore() {
	ctx := context.Background()
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	aliceStore, bobStore := mls.NewMemoryStore(), mls.NewMemoryStore()

	// Bob publishes a KeyPackage and keeps its private keys in his store.
	bobSig, _ := cs.GenerateSignatureKey()
	bobKP, err := mls.GenerateKeyPackage(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("bob")}, bobSig, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := bobStore.PutKeyPackage(ctx, bobKP); err != nil {
		log.Fatal(err)
	}

	// Alice creates a group and saves it.
	aliceSig, _ := cs.GenerateSignatureKey()
	alice, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}, aliceSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := mls.SaveGroup(ctx, aliceStore, alice, nil); err != nil {
		log.Fatal(err)
	}
	// She adds Bob: store the commit before sending it, merge it once the
	// delivery service accepted it, and save again.
	pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{bobKP.KeyPackage}})
	if err != nil {
		log.Fatal(err)
	}
	if err := mls.SavePendingCommit(ctx, aliceStore, alice, pc, nil); err != nil {
		log.Fatal(err)
	}
	// ... the delivery service accepts pc.Commit ...
	if err := alice.MergePendingCommit(pc); err != nil {
		log.Fatal(err)
	}
	if err := mls.SaveGroup(ctx, aliceStore, alice, nil); err != nil {
		log.Fatal(err)
	}

	// Bob joins with the key from his store; the save deletes it.
	bob, consumed, err := mls.JoinWithStore(ctx, pc.Welcome, bobStore, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := mls.SaveGroup(ctx, bobStore, bob, &mls.SaveOptions{Consumed: consumed}); err != nil {
		log.Fatal(err)
	}
	ref, _ := bobKP.KeyPackage.Ref()
	_, err = bobStore.KeyPackagePrivate(ctx, ref)
	fmt.Println("key package private key gone:", errors.Is(err, mls.ErrNotFound))

	// Alice saves the advanced ratchet before sending.
	msg, _ := alice.EncryptApplication([]byte("hello after a restart"), nil)
	if err := mls.SaveGroup(ctx, aliceStore, alice, nil); err != nil {
		log.Fatal(err)
	}
	// After a restart, Bob opens his group and reads Alice's message.
	bob, err = mls.OpenGroup(ctx, bobStore, bob.GroupID(), nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := bob.Process(msg)
	if err != nil {
		log.Fatal(err)
	}
	if err := mls.SaveGroup(ctx, bobStore, bob, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bob read %q in epoch %d\n", res.ApplicationData, bob.Epoch())

	// A stale copy of Alice's group cannot overwrite the newer state.
	stale, _ := mls.OpenGroup(ctx, aliceStore, alice.GroupID(), nil)
	_, _ = alice.EncryptApplication([]byte("moves the ratchet"), nil)
	_ = mls.SaveGroup(ctx, aliceStore, alice, nil)
	_, _ = stale.EncryptApplication([]byte("would reuse a key"), nil)
	err = mls.SaveGroup(ctx, aliceStore, stale, nil)
	fmt.Println("stale save:", errors.Is(err, mls.ErrConflict))
	// Output:
	// key package private key gone: true
	// bob read "hello after a restart" in epoch 1
	// stale save: true
}

func TestMemoryStoreConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	s := mls.NewMemoryStore()
	gid := []byte("group")
	rec := func(k, v string) mls.Record { return mls.Record{Key: []byte(k), Value: []byte(v)} }
	rev, err := s.SaveGroupRecords(ctx, gid, 0, []mls.Record{rec("h", "epoch 0")}, nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, rev)
	_, err = s.SaveGroupRecords(ctx, gid, 0, []mls.Record{rec("h", "again")}, nil)
	require.ErrorIs(t, err, mls.ErrConflict)
	for epoch := 1; epoch <= 20; epoch++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for w := range 8 {
			wg.Go(func() {
				_, err := s.SaveGroupRecords(ctx, gid, rev, []mls.Record{rec("h", fmt.Sprintf("epoch %d by %d", epoch, w)), rec(fmt.Sprint(w), "x")}, nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, mls.ErrConflict):
					conflicts++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		require.Equal(t, 1, wins)
		require.Equal(t, 7, conflicts)
		sg, err := s.LoadGroupRecords(ctx, gid)
		require.NoError(t, err)
		require.Equal(t, rev+1, sg.Revision)
		rev = sg.Revision
	}
	// Deletes.
	rev, err = s.SaveGroupRecords(ctx, gid, rev, []mls.Record{{Key: []byte("h")}, {Key: []byte("absent")}}, nil)
	require.NoError(t, err)
	sg, err := s.LoadGroupRecords(ctx, gid)
	require.NoError(t, err)
	for _, r := range sg.Records {
		require.NotEqual(t, "h", string(r.Key))
	}
	require.ErrorIs(t, s.DeleteGroup(ctx, gid, rev-1), mls.ErrConflict)
	require.NoError(t, s.DeleteGroup(ctx, gid, rev))
	_, err = s.LoadGroupRecords(ctx, gid)
	require.ErrorIs(t, err, mls.ErrNotFound)
}

func TestMemoryStoreConsumed(t *testing.T) {
	ctx := context.Background()
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	s := mls.NewMemoryStore()
	sig, _ := cs.GenerateSignatureKey()
	kp, err := mls.GenerateKeyPackage(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("bob")}, sig, nil)
	require.NoError(t, err)
	require.NoError(t, s.PutKeyPackage(ctx, kp))
	require.NoError(t, s.PutPSK(ctx, []byte("psk"), []byte("secret")))
	ref, _ := kp.KeyPackage.Ref()
	got, err := s.KeyPackagePrivate(ctx, ref)
	require.NoError(t, err)
	require.True(t, bytes.Equal(got.InitKey.Bytes(), kp.InitKey.Bytes()))
	gotRef, got, err := s.FindKeyPackage(ctx, []mls.KeyPackageRef{[]byte("other"), ref})
	require.NoError(t, err)
	require.Equal(t, ref, gotRef)
	require.True(t, bytes.Equal(got.InitKey.Bytes(), kp.InitKey.Bytes()))
	consumed := &mls.Consumed{KeyPackages: []mls.KeyPackageRef{ref}, PSKs: [][]byte{[]byte("psk")}}
	w := []mls.Record{{Key: []byte("h"), Value: []byte("s")}}
	// Two joins racing with the same KeyPackage: one wins.
	_, err = s.SaveGroupRecords(ctx, []byte("g1"), 0, w, consumed)
	require.NoError(t, err)
	_, err = s.SaveGroupRecords(ctx, []byte("g2"), 0, w, consumed)
	require.ErrorIs(t, err, mls.ErrConflict)
	_, err = s.LoadGroupRecords(ctx, []byte("g2"))
	require.ErrorIs(t, err, mls.ErrNotFound, "failed save left a state")
	_, err = s.KeyPackagePrivate(ctx, ref)
	require.ErrorIs(t, err, mls.ErrNotFound)
	_, _, err = s.FindKeyPackage(ctx, []mls.KeyPackageRef{ref})
	require.ErrorIs(t, err, mls.ErrNotFound)
	_, err = s.PSK(ctx, []byte("psk"))
	require.ErrorIs(t, err, mls.ErrNotFound)
}
