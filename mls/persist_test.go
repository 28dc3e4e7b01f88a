package mls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
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

	// A second commit stored from the same epoch replaces the first.
	p1, err := alice.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, SavePendingCommit(ctx, sa, alice.g, p1, nil))
	p2, err := alice.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, SavePendingCommit(ctx, sa, alice.g, p2, nil))
	g, err = OpenGroup(ctx, sa, alice.g.GroupID(), nil)
	require.NoError(t, err)
	require.True(t, g.RecoveredCommit().Is(p2.Commit))
	sg, err = sa.LoadGroupRecords(ctx, alice.g.GroupID())
	require.NoError(t, err)
	first := alice.g.persist().epochInfo(p1.staged.state.framer).id
	for _, r := range sg.Records {
		if r.Key[0] == keyEpoch || r.Key[0] == keyKeys {
			require.NotEqual(t, first[:], r.Key[1:], "records of the replaced commit's epoch")
		}
	}
	require.NoError(t, SaveGroup(ctx, sa, alice.g, &SaveOptions{DiscardPendingCommit: true}))

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

// TestLoadManyCachedProposals loads groups with many cached proposals (an
// outsider can make a member cache up to Config.MaxCachedProposals) and
// checks that loading grows linearly: from 4,000 to 32,000 proposals the
// allocations grow about 8x, and stay within 16x the stored bytes, for
// both the whole-state export and the records.
func TestLoadManyCachedProposals(t *testing.T) {
	ctx := context.Background()
	type cost struct{ allocs, bytes, input float64 }
	measure := func(k int) (whole, records cost) {
		cfg := &Config{MaxCachedProposals: 40000}
		alice, _ := twoMembers(t, cfg)
		g := alice.g
		g.cfg = *cfg
		for i := range k {
			ref := make([]byte, g.cs.HashSize())
			copy(ref, fmt.Appendf(nil, "proposal %d", i))
			p := &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 1}}
			require.NoError(t, g.state.addProposal(cachedProposal{ref: ref, proposal: p, sender: Sender{Type: SenderTypeExternal}}, 40000))
		}
		state, err := g.MarshalState()
		require.NoError(t, err)
		s := NewMemoryStore()
		require.NoError(t, SaveGroup(ctx, s, g, nil))
		run := func(f func()) cost {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			f()
			runtime.ReadMemStats(&after)
			return cost{allocs: float64(after.Mallocs - before.Mallocs), bytes: float64(after.TotalAlloc - before.TotalAlloc)}
		}
		whole = run(func() {
			l, err := LoadGroup(state, cfg)
			require.NoError(t, err)
			require.Len(t, l.state.proposals, k)
		})
		whole.input = float64(len(state))
		sg, err := s.LoadGroupRecords(ctx, g.GroupID())
		require.NoError(t, err)
		records = run(func() {
			l, err := OpenGroup(ctx, s, g.GroupID(), cfg)
			require.NoError(t, err)
			require.Len(t, l.state.proposals, k)
		})
		for _, r := range sg.Records {
			records.input += float64(len(r.Key) + len(r.Value))
		}
		return whole, records
	}
	w1, r1 := measure(4000)
	w2, r2 := measure(32000)
	for _, c := range []struct {
		name   string
		c1, c2 cost
	}{{"LoadGroup", w1, w2}, {"OpenGroup", r1, r2}} {
		t.Logf("%s: %.0f -> %.0f allocations, %.0f -> %.0f bytes for %.0f -> %.0f input bytes", c.name, c.c1.allocs, c.c2.allocs, c.c1.bytes, c.c2.bytes, c.c1.input, c.c2.input)
		require.Less(t, c.c2.allocs/c.c1.allocs, 10.0, c.name)
		require.Less(t, c.c2.bytes, 16*c.c2.input, c.name)
	}
	// A duplicate reference in a state is refused.
	alice, _ := twoMembers(t, nil)
	ref := make([]byte, alice.g.cs.HashSize())
	p := &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 1}}
	alice.g.state.proposals = append(alice.g.state.proposals, cachedProposal{ref: ref, proposal: p, sender: Sender{Type: SenderTypeExternal}}, cachedProposal{ref: ref, proposal: p, sender: Sender{Type: SenderTypeExternal}})
	state, err := alice.g.MarshalState()
	require.NoError(t, err)
	_, err = LoadGroup(state, nil)
	require.ErrorIs(t, err, ErrInvalidState)
}

// countingKeys counts the lookups of a KeyStore.
type countingKeys struct {
	KeyStore
	finds, gets int
}

func (c *countingKeys) FindKeyPackage(ctx context.Context, refs []KeyPackageRef) (KeyPackageRef, *KeyPackagePrivate, error) {
	c.finds++
	return c.KeyStore.FindKeyPackage(ctx, refs)
}

func (c *countingKeys) KeyPackagePrivate(ctx context.Context, ref KeyPackageRef) (*KeyPackagePrivate, error) {
	c.gets++
	return c.KeyStore.KeyPackagePrivate(ctx, ref)
}

// TestJoinWithStoreOneLookup checks that joining from a Welcome with
// 100,000 entries asks the key store once.
func TestJoinWithStoreOneLookup(t *testing.T) {
	ctx := context.Background()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
	var err error
	alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil)
	require.NoError(t, err)
	kp := bob.keyPackage(t, cs)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	w := transmit(t, pc.Welcome)
	mine := w.Welcome.Secrets[0]
	secrets := make([]EncryptedGroupSecrets, 0, 100000)
	for i := range 100000 - 1 {
		other := mine
		other.NewMember = fmt.Appendf(make([]byte, 0, 32), "%032d", i)
		secrets = append(secrets, other)
	}
	w.Welcome.Secrets = append(secrets, mine) // ours last
	keys := &countingKeys{KeyStore: NewMemoryStore()}
	require.NoError(t, keys.PutKeyPackage(ctx, kp))
	g, consumed, err := JoinWithStore(ctx, w, keys, nil, nil)
	require.NoError(t, err)
	require.Equal(t, 1, keys.finds)
	require.Zero(t, keys.gets)
	require.Len(t, consumed.KeyPackages, 1)
	require.EqualValues(t, 1, g.Epoch())
	// A Welcome with no entry for this client: ErrNotMember, one lookup.
	w.Welcome.Secrets = secrets
	_, _, err = JoinWithStore(ctx, w, keys, nil, nil)
	require.ErrorIs(t, err, ErrNotMember)
	require.Equal(t, 2, keys.finds)
}

// TestJoinWithStoreHeldGroupID checks that a Welcome for a group ID the
// store already holds is refused, and changes nothing.
func TestJoinWithStoreHeldGroupID(t *testing.T) {
	ctx := context.Background()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
	var err error
	alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil)
	require.NoError(t, err)
	s := NewMemoryStore()
	kp1, kp2 := bob.keyPackage(t, cs), newMember(t, cs, "bob's other device").keyPackage(t, cs)
	require.NoError(t, s.PutKeyPackage(ctx, kp1))
	require.NoError(t, s.PutKeyPackage(ctx, kp2))
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp1.KeyPackage}})
	require.NoError(t, err)
	g, consumed, err := JoinWithStore(ctx, transmit(t, pc.Welcome), s, nil, nil)
	require.NoError(t, err)
	require.NoError(t, SaveGroup(ctx, s, g, &SaveOptions{Consumed: consumed}))
	// A second Welcome to the same group ID, for another KeyPackage.
	require.NoError(t, alice.g.MergePendingCommit(pc))
	pc, err = alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp2.KeyPackage}})
	require.NoError(t, err)
	_, _, err = JoinWithStore(ctx, transmit(t, pc.Welcome), s, nil, nil)
	require.ErrorIs(t, err, ErrGroupExists)
	ref2, _ := kp2.KeyPackage.Ref()
	_, err = s.KeyPackagePrivate(ctx, ref2)
	require.NoError(t, err, "the refused join consumed the KeyPackage")
}

// TestPersistRemovedMember checks that a member removed from the group
// saves the erasure of its init secret and its inactivity.
func TestPersistRemovedMember(t *testing.T) {
	alice, bob := twoMembers(t, nil)
	s := NewMemoryStore()
	reopen(t, s, bob)
	pc, err := alice.g.Commit(&CommitOptions{Remove: []LeafIndex{bob.g.OwnLeafIndex()}})
	require.NoError(t, err)
	res := process(t, bob, pc.Commit)
	require.True(t, res.Commit.SelfRemoved)
	require.NoError(t, bob.g.Merge(res.Commit))
	require.False(t, bob.g.Active())
	reopen(t, s, bob)
	require.False(t, bob.g.Active())
	require.Nil(t, bob.g.state.secrets.NextInit(), "the init secret came back from the store")
}

// TestOpenGroupCorrupted opens groups whose records were corrupted one
// at a time (truncated, a byte flipped, deleted): OpenGroup and the
// operations after it fail with errors matching ErrInvalidState (or a
// message error), and never panic.
func TestOpenGroupCorrupted(t *testing.T) {
	ctx := context.Background()
	alice, bob := twoMembers(t, nil)
	for range 2 { // past epochs
		pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		deliverCommit(t, alice, pc, []*member{alice, bob})
	}
	prop, err := alice.g.ProposeUpdate()
	require.NoError(t, err)
	process(t, bob, prop)
	s := NewMemoryStore()
	require.NoError(t, SaveGroup(ctx, s, bob.g, nil))
	msg := encrypt(t, alice.g, "hello")
	sg, err := s.LoadGroupRecords(ctx, bob.g.GroupID())
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	try := func(recs []Record) {
		c := NewMemoryStore()
		_, err := c.SaveGroupRecords(ctx, bob.g.GroupID(), 0, recs, nil)
		require.NoError(t, err)
		g, err := OpenGroup(ctx, c, bob.g.GroupID(), nil)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidState)
			return
		}
		g.Process(transmit(t, msg))
		g.Members()
		if _, err := g.Commit(nil); err != nil && !errors.Is(err, ErrInvalidState) {
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
		}
		g.MarshalState()
	}
	for i := range sg.Records {
		for k := range 6 {
			recs := make([]Record, len(sg.Records))
			for j, r := range sg.Records {
				recs[j] = Record{Key: r.Key, Value: bytes.Clone(r.Value)}
			}
			v := recs[i].Value
			switch {
			case k == 0:
				recs = append(recs[:i], recs[i+1:]...)
			case k == 1 && len(v) > 0:
				recs[i].Value = v[:rng.IntN(len(v))]
			case len(v) > 0:
				v[rng.IntN(len(v))] ^= byte(1 + rng.IntN(255))
			}
			try(recs)
		}
	}
}
