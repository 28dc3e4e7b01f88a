package mls

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
)

// countingStore counts the bytes each save writes (keys and values).
type countingStore struct {
	*MemoryStore
	written int
}

func (c *countingStore) SaveGroupRecords(ctx context.Context, groupID []byte, prev uint64, writes []Record, consumed *Consumed) (uint64, error) {
	for _, w := range writes {
		c.written += len(w.Key) + len(w.Value)
	}
	return c.MemoryStore.SaveGroupRecords(ctx, groupID, prev, writes, consumed)
}

func recordCount(t *testing.T, s *MemoryStore, gid []byte) (n, size int) {
	t.Helper()
	sg, err := s.LoadGroupRecords(context.Background(), gid)
	require.NoError(t, err)
	for _, r := range sg.Records {
		size += len(r.Key) + len(r.Value)
	}
	return len(sg.Records), size
}

// reopen saves m's group to s and replaces it with a group opened from s.
func reopen(t *testing.T, s GroupStore, m *member) {
	t.Helper()
	require.NoError(t, SaveGroup(context.Background(), s, m.g, nil))
	g, err := OpenGroup(context.Background(), s, m.g.GroupID(), nil)
	require.NoError(t, err, m.name)
	m.g = g
}

func TestPersistRoundTrip(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
			carol := newMember(t, cs, "carol")
			ms := []*member{alice, bob, carol}
			stores := map[*member]GroupStore{alice: NewMemoryStore(), bob: NewMemoryStore(), carol: NewMemoryStore()}
			var err error
			alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil)
			require.NoError(t, err)
			reopen(t, stores[alice], alice)
			kps := []*KeyPackagePrivate{bob.keyPackage(t, cs), carol.keyPackage(t, cs)}
			pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kps[0].KeyPackage, kps[1].KeyPackage}})
			require.NoError(t, err)
			require.NoError(t, SavePendingCommit(ctx, stores[alice], alice.g, pc, nil))
			require.NoError(t, alice.g.MergePendingCommit(pc))
			for i, m := range []*member{bob, carol} {
				m.g, err = Join(transmit(t, pc.Welcome), kps[i], nil, nil)
				require.NoError(t, err)
			}
			for _, m := range ms {
				reopen(t, stores[m], m)
			}
			checkAgreement(t, ms)
			// Several epochs, with messages, proposals and reloads between
			// every step.
			for round := range 6 {
				committer := ms[round%3]
				if round == 2 {
					prop, err := bob.g.ProposeUpdate()
					require.NoError(t, err)
					for _, m := range ms {
						if m != bob {
							process(t, m, prop)
						}
					}
					for _, m := range ms {
						reopen(t, stores[m], m)
					}
				}
				pc, err := committer.g.Commit(&CommitOptions{ForcePath: true})
				require.NoError(t, err)
				require.NoError(t, SavePendingCommit(ctx, stores[committer], committer.g, pc, nil))
				deliverCommit(t, committer, pc, ms)
				for _, m := range ms {
					reopen(t, stores[m], m)
				}
				for _, sender := range ms {
					msg := encrypt(t, sender.g, fmt.Sprintf("round %d from %s", round, sender.name))
					reopen(t, stores[sender], sender)
					for _, m := range ms {
						if m != sender {
							res := process(t, m, msg)
							require.Equal(t, fmt.Sprintf("round %d from %s", round, sender.name), string(res.ApplicationData))
							reopen(t, stores[m], m)
							// The key is gone from the store too.
							_, err := m.g.Process(transmit(t, msg))
							require.ErrorIs(t, err, ErrKeyUsed)
						}
					}
				}
			}
			checkAgreement(t, ms)
			// Past epochs are stored: a late message of an earlier epoch.
			late := encrypt(t, carol.g, "late")
			pc, err = alice.g.Commit(&CommitOptions{ForcePath: true})
			require.NoError(t, err)
			deliverCommit(t, alice, pc, ms)
			for _, m := range ms {
				reopen(t, stores[m], m)
			}
			require.Equal(t, "late", string(process(t, bob, late).ApplicationData))
			reopen(t, stores[bob], bob)
			_, err = bob.g.Process(transmit(t, late))
			require.ErrorIs(t, err, ErrKeyUsed)
			// The whole-state export still works on an opened group.
			state, err := bob.g.MarshalState()
			require.NoError(t, err)
			_, err = LoadGroup(state, nil)
			require.NoError(t, err)
		})
	}
}

// TestPersistMessageBytes checks that the save after one message writes
// O(log n) bytes, and that a cold start decrypts without decoding the tree.
func TestPersistMessageBytes(t *testing.T) {
	ctx := context.Background()
	g := bigGroup(t, 1000)
	s := &countingStore{MemoryStore: NewMemoryStore()}
	require.NoError(t, SaveGroup(ctx, s, g, nil))
	_, total := recordCount(t, s.MemoryStore, g.GroupID())
	full, err := g.MarshalState()
	require.NoError(t, err)
	t.Logf("records %d bytes, MarshalState %d bytes", total, len(full))
	require.Less(t, total, len(full)*3/2)

	reader, err := OpenGroup(ctx, s, g.GroupID(), nil)
	require.NoError(t, err)
	require.Nil(t, reader.state.tree, "opening decodes the tree")
	msg, err := g.EncryptApplication([]byte("hi"), nil)
	require.NoError(t, err)
	s.written = 0
	require.NoError(t, SaveGroup(ctx, s, g, nil))
	require.Less(t, s.written, 1024, "save after sending")
	res, err := reader.Process(transmit(t, msg))
	require.NoError(t, err)
	require.Equal(t, "hi", string(res.ApplicationData))
	require.Nil(t, reader.state.tree, "decrypting decoded the tree")
	// A second reader's save after decrypting writes a few entries. The
	// first message of a sender in an epoch writes the secret tree's path.
	s.written = 0
	require.NoError(t, SaveGroup(ctx, s, g, nil))
	require.Zero(t, s.written, "a save without changes writes nothing")
	reader2 := &countingStore{MemoryStore: NewMemoryStore()}
	state, err := reader.MarshalState()
	require.NoError(t, err)
	cp, err := LoadGroup(state, nil)
	require.NoError(t, err)
	require.NoError(t, SaveGroup(ctx, reader2, cp, nil)) // a copy in another store
	r2, err := OpenGroup(ctx, reader2, g.GroupID(), nil)
	require.NoError(t, err)
	msg2, err := g.EncryptApplication([]byte("again"), nil)
	require.NoError(t, err)
	_, err = r2.Process(transmit(t, msg2))
	require.NoError(t, err)
	reader2.written = 0
	require.NoError(t, SaveGroup(ctx, reader2, r2, nil))
	require.Less(t, reader2.written, 1024)
	require.Positive(t, reader2.written)

	// A commit writes the chunks its path changed, not the tree.
	require.Equal(t, 1000, reader.MemberCount()) // decodes the tree
	pc, err := g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	s.written = 0
	require.NoError(t, SavePendingCommit(ctx, s, g, pc, nil))
	require.NoError(t, g.MergePendingCommit(pc))
	require.NoError(t, SaveGroup(ctx, s, g, nil))
	t.Logf("commit wrote %d bytes of %d", s.written, total)
	require.Less(t, s.written, total/4)
}

// TestPersistPendingCommit checks the recovery of a stored commit: merged
// if the delivery service accepted it, dropped if it took another.
func TestPersistPendingCommit(t *testing.T) {
	ctx := context.Background()
	alice, bob := twoMembers(t, nil)
	sa, sb := NewMemoryStore(), NewMemoryStore()
	reopen(t, sa, alice)
	reopen(t, sb, bob)

	// Alice stores her commit and crashes: the store still has epoch 1
	// as current and the commit as pending.
	pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, SavePendingCommit(ctx, sa, alice.g, pc, nil))
	g, err := OpenGroup(ctx, sa, alice.g.GroupID(), nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, g.Epoch())
	rec := g.RecoveredCommit()
	require.NotNil(t, rec)
	require.True(t, rec.Is(transmit(t, pc.Commit)))
	// The delivery service accepted it: Bob merges it, Alice too.
	res := process(t, bob, pc.Commit)
	require.NoError(t, bob.g.Merge(res.Commit))
	require.NoError(t, g.MergePendingCommit(rec))
	require.NoError(t, SaveGroup(ctx, sa, g, nil))
	alice.g = g
	reopen(t, sa, alice)
	require.Nil(t, alice.g.RecoveredCommit())
	checkAgreement(t, []*member{alice, bob})

	// Both commit, both store; the delivery service takes Bob's. Alice
	// reopens, drops hers and merges Bob's: no fork.
	pa, err := alice.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, SavePendingCommit(ctx, sa, alice.g, pa, nil))
	pb, err := bob.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, SavePendingCommit(ctx, sb, bob.g, pb, nil))
	require.NoError(t, bob.g.MergePendingCommit(pb))
	require.NoError(t, SaveGroup(ctx, sb, bob.g, nil))
	g, err = OpenGroup(ctx, sa, alice.g.GroupID(), nil)
	require.NoError(t, err)
	rec = g.RecoveredCommit()
	require.NotNil(t, rec)
	require.False(t, rec.Is(transmit(t, pb.Commit)))
	res, err = g.Process(transmit(t, pb.Commit))
	require.NoError(t, err)
	require.NoError(t, g.Merge(res.Commit))
	require.NoError(t, SaveGroup(ctx, sa, g, nil))
	alice.g = g
	reopen(t, sa, alice)
	require.Nil(t, alice.g.RecoveredCommit())
	checkAgreement(t, []*member{alice, bob})
	// Nothing of the dropped commit's epoch is left.
	sg, err := sa.LoadGroupRecords(ctx, alice.g.GroupID())
	require.NoError(t, err)
	for _, r := range sg.Records {
		require.NotEqual(t, byte(keyPending), r.Key[0])
		if r.Key[0] == keyEpoch {
			id := epochID(r.Key[1:])
			require.NotEqual(t, alice.g.persist().epochInfo(pa.staged.state.framer).id, id)
		}
	}

	// A commit the delivery service refused for good is discarded.
	pa, err = alice.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, SavePendingCommit(ctx, sa, alice.g, pa, nil))
	require.NoError(t, SaveGroup(ctx, sa, alice.g, &SaveOptions{DiscardPendingCommit: true}))
	g, err = OpenGroup(ctx, sa, alice.g.GroupID(), nil)
	require.NoError(t, err)
	require.Nil(t, g.RecoveredCommit())
}

// TestPersistConflict checks that two writers from the same revision
// cannot both save, so a stale copy never overwrites a newer state.
func TestPersistConflict(t *testing.T) {
	ctx := context.Background()
	alice, _ := twoMembers(t, nil)
	s := NewMemoryStore()
	reopen(t, s, alice)
	other, err := OpenGroup(ctx, s, alice.g.GroupID(), nil)
	require.NoError(t, err)
	_ = encrypt(t, alice.g, "one")
	require.NoError(t, SaveGroup(ctx, s, alice.g, nil))
	_ = encrypt(t, other, "two")
	require.ErrorIs(t, SaveGroup(ctx, s, other, nil), ErrConflict)
	// A new group cannot replace a stored one of the same ID.
	fresh, err := OpenGroup(ctx, s, alice.g.GroupID(), nil)
	require.NoError(t, err)
	require.ErrorIs(t, SaveGroup(ctx, NewMemoryStore(), fresh, nil), ErrConflict)
}

// TestPersistAppRecords checks that application records are saved in the
// same step and read back.
func TestPersistAppRecords(t *testing.T) {
	ctx := context.Background()
	alice, _ := twoMembers(t, nil)
	s := NewMemoryStore()
	require.NoError(t, SaveGroup(ctx, s, alice.g, &SaveOptions{App: []Record{{Key: []byte("outbox/1"), Value: []byte("ciphertext")}}}))
	recs, err := LoadAppRecords(ctx, s, alice.g.GroupID())
	require.NoError(t, err)
	require.Equal(t, []Record{{Key: []byte("outbox/1"), Value: []byte("ciphertext")}}, recs)
	g, err := OpenGroup(ctx, s, alice.g.GroupID(), nil)
	require.NoError(t, err)
	require.NoError(t, SaveGroup(ctx, s, g, &SaveOptions{App: []Record{{Key: []byte("outbox/1")}}}))
	recs, err = LoadAppRecords(ctx, s, alice.g.GroupID())
	require.NoError(t, err)
	require.Empty(t, recs)
}

// TestPersistMigrateFixture migrates the v1 whole-state fixtures to
// records and continues from them.
func TestPersistMigrateFixture(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			data, err := os.ReadFile(fixturePath(cs))
			require.NoError(t, err)
			var f stateFixture
			require.NoError(t, wire.Parse(data, f.unmarshal))
			alice, bob := &member{name: "alice"}, &member{name: "bob"}
			alice.g, err = LoadGroup(f.alice, nil)
			require.NoError(t, err)
			bob.g, err = LoadGroup(f.bob, nil)
			require.NoError(t, err)
			sa, sb := NewMemoryStore(), NewMemoryStore()
			reopen(t, sa, alice)
			reopen(t, sb, bob)
			require.Len(t, alice.g.past, 2)
			require.Len(t, alice.g.state.proposals, 1)
			require.Len(t, bob.g.pendingUpdates, 1)
			msg, err := ParseMessage(f.message)
			require.NoError(t, err)
			require.Equal(t, f.plaintext, process(t, alice, msg).ApplicationData)
			reopen(t, sa, alice)
			pc, err := alice.g.Commit(nil)
			require.NoError(t, err)
			deliverCommit(t, alice, pc, []*member{alice, bob})
			reopen(t, sa, alice)
			reopen(t, sb, bob)
			checkAgreement(t, []*member{alice, bob})
		})
	}
}
