package mls_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"testing"

	"github.com/microchat/e2ee/mls"
)

// ExampleGroupStore shows the life of a group state in a store: save after
// every change with the revision it was loaded at, and delete the
// KeyPackage private key in the same step that saves the joined group.
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

	// Alice creates a group, adds Bob, and saves each state.
	aliceSig, _ := cs.GenerateSignatureKey()
	alice, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}, aliceSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	save := func(store mls.GroupStore, g *mls.Group, prev uint64, consumed *mls.Consumed) uint64 {
		state, err := g.MarshalState()
		if err != nil {
			log.Fatal(err)
		}
		rev, err := store.SaveGroupState(ctx, g.GroupID(), g.Epoch(), state, prev, consumed)
		if err != nil {
			log.Fatal(err)
		}
		return rev
	}
	aliceRev := save(aliceStore, alice, 0, nil)
	pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{bobKP.KeyPackage}})
	if err != nil {
		log.Fatal(err)
	}
	// Save the new epoch before sending the commit: if another writer
	// saved first, this fails with ErrConflict and nothing is sent.
	if err := alice.MergePendingCommit(pc); err != nil {
		log.Fatal(err)
	}
	aliceRev = save(aliceStore, alice, aliceRev, nil)

	// Bob joins with the key from his store; the save deletes it.
	bob, consumed, err := mls.JoinWithStore(ctx, pc.Welcome, bobStore, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	save(bobStore, bob, 0, consumed)
	ref, _ := bobKP.KeyPackage.Ref()
	_, err = bobStore.KeyPackagePrivate(ctx, ref)
	fmt.Println("key package private key gone:", errors.Is(err, mls.ErrNotFound))

	// After a restart, Bob loads his group and reads Alice's message.
	stored, err := bobStore.LoadGroupState(ctx, bob.GroupID())
	if err != nil {
		log.Fatal(err)
	}
	bob, err = mls.LoadGroup(stored.State, nil)
	if err != nil {
		log.Fatal(err)
	}
	msg, _ := alice.EncryptApplication([]byte("hello after a restart"), nil)
	save(aliceStore, alice, aliceRev, nil)
	res, err := bob.Process(msg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bob read %q in epoch %d\n", res.ApplicationData, bob.Epoch())

	// A stale writer cannot overwrite the newer state.
	_, err = aliceStore.SaveGroupState(ctx, alice.GroupID(), alice.Epoch(), []byte("stale"), aliceRev, nil)
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
	rev, err := s.SaveGroupState(ctx, gid, 0, []byte("epoch 0"), 0, nil)
	if err != nil || rev != 1 {
		t.Fatal(rev, err)
	}
	if _, err := s.SaveGroupState(ctx, gid, 0, []byte("again"), 0, nil); !errors.Is(err, mls.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	for epoch := uint64(1); epoch <= 20; epoch++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for w := range 8 {
			wg.Go(func() {
				_, err := s.SaveGroupState(ctx, gid, epoch, fmt.Appendf(nil, "epoch %d by %d", epoch, w), rev, nil)
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
		if wins != 1 || conflicts != 7 {
			t.Fatalf("epoch %d: %d wins, %d conflicts", epoch, wins, conflicts)
		}
		sg, err := s.LoadGroupState(ctx, gid)
		if err != nil || sg.Epoch != epoch || sg.Revision != rev+1 {
			t.Fatal(sg, err)
		}
		rev = sg.Revision
	}
	// An older epoch is refused even at the current revision.
	if _, err := s.SaveGroupState(ctx, gid, 3, []byte("old"), rev, nil); !errors.Is(err, mls.ErrConflict) {
		t.Fatalf("older epoch: %v", err)
	}
	if err := s.DeleteGroupState(ctx, gid, rev-1); !errors.Is(err, mls.ErrConflict) {
		t.Fatal(err)
	}
	if err := s.DeleteGroupState(ctx, gid, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadGroupState(ctx, gid); !errors.Is(err, mls.ErrNotFound) {
		t.Fatal(err)
	}
}

func TestMemoryStoreConsumed(t *testing.T) {
	ctx := context.Background()
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	s := mls.NewMemoryStore()
	sig, _ := cs.GenerateSignatureKey()
	kp, err := mls.GenerateKeyPackage(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("bob")}, sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutKeyPackage(ctx, kp); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPSK(ctx, []byte("psk"), []byte("secret")); err != nil {
		t.Fatal(err)
	}
	ref, _ := kp.KeyPackage.Ref()
	got, err := s.KeyPackagePrivate(ctx, ref)
	if err != nil || !bytes.Equal(got.InitKey.Bytes(), kp.InitKey.Bytes()) {
		t.Fatal(err)
	}
	consumed := &mls.Consumed{KeyPackages: []mls.KeyPackageRef{ref}, PSKs: [][]byte{[]byte("psk")}}
	// Two joins racing with the same KeyPackage: one wins.
	if _, err := s.SaveGroupState(ctx, []byte("g1"), 1, []byte("s"), 0, consumed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveGroupState(ctx, []byte("g2"), 1, []byte("s"), 0, consumed); !errors.Is(err, mls.ErrConflict) {
		t.Fatalf("reused key package: %v", err)
	}
	if _, err := s.LoadGroupState(ctx, []byte("g2")); !errors.Is(err, mls.ErrNotFound) {
		t.Fatal("failed save left a state")
	}
	if _, err := s.KeyPackagePrivate(ctx, ref); !errors.Is(err, mls.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := s.PSK(ctx, []byte("psk")); !errors.Is(err, mls.ErrNotFound) {
		t.Fatal(err)
	}
}
