package mls

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
)

// TestRandomOperations drives groups of every cipher suite through random
// sequences of adds, removes, updates (by commit and by proposal),
// proposals by reference from several members, and application messages,
// all through the public API and serialized messages. After every step all
// members agree on the epoch, tree hash and epoch authenticator and read
// each other's messages; removed members read nothing sent afterwards.
func TestRandomOperations(t *testing.T) {
	steps := 24
	if testing.Short() {
		steps = 8
	}
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			testRandomOperations(t, cs, steps, uint64(cs))
		})
	}
}

func testRandomOperations(t *testing.T, cs CipherSuite, steps int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	next := 0
	fresh := func() *member {
		next++
		return newMember(t, cs, fmt.Sprintf("m%d", next))
	}
	creator := fresh()
	var err error
	// Every member uses the same wire format policy: one that sends
	// handshakes privately refuses public ones.
	cfg := &Config{Handshake: WireFormatPolicy(seed % 2)}
	if creator.g, err = NewGroup(cs, creator.cred, creator.sig, nil, cfg); err != nil {
		t.Fatal(err)
	}
	members := []*member{creator}
	var removed []*member
	active := func() []*member {
		var out []*member
		for _, m := range members {
			if m.g.Active() {
				out = append(out, m)
			}
		}
		return out
	}
	pick := func() *member { a := active(); return a[rng.IntN(len(a))] }

	// addMembers commits the addition of n new members by committer.
	addMembers := func(committer *member, n int) {
		var kps []*KeyPackagePrivate
		var joiners []*member
		opts := &CommitOptions{}
		for range n {
			j := fresh()
			kp := j.keyPackage(t, cs)
			kps = append(kps, kp)
			joiners = append(joiners, j)
			opts.Add = append(opts.Add, kp.KeyPackage)
		}
		pc, err := committer.g.Commit(opts)
		require.NoError(t, err)
		deliverCommit(t, committer, pc, members)
		for i, j := range joiners {
			if j.g, err = Join(transmit(t, pc.Welcome), kps[i], nil, cfg); err != nil {
				t.Fatalf("%s joining: %v", j.name, err)
			}
			members = append(members, j)
		}
	}
	addMembers(creator, 3)
	checkAgreement(t, members)

	for step := range steps {
		a := active()
		switch op := rng.IntN(6); {
		case op == 0 || len(a) < 3:
			addMembers(pick(), 1+rng.IntN(2))
		case op == 1:
			// Remove one member by commit; it must lose access.
			committer := pick()
			var victim *member
			for victim == nil || victim == committer {
				victim = pick()
			}
			pc, err := committer.g.Commit(&CommitOptions{Remove: []LeafIndex{victim.g.OwnLeafIndex()}})
			require.NoError(t, err)
			deliverCommit(t, committer, pc, members)
			if victim.g.Active() {
				t.Fatalf("step %d: %s still active after removal", step, victim.name)
			}
			removed = append(removed, victim)
		case op == 2:
			// Several members propose updates; another commits them.
			committer := pick()
			for _, m := range a {
				if m == committer || rng.IntN(2) == 0 {
					continue
				}
				prop, err := m.g.ProposeUpdate()
				require.NoError(t, err)
				broadcast(t, m, prop, members)
			}
			pc, err := committer.g.Commit(nil)
			require.NoError(t, err)
			deliverCommit(t, committer, pc, members)
		case op == 3:
			// A proposal to remove by reference, committed by someone else.
			proposer, committer := pick(), pick()
			var victim *member
			for victim == nil || victim == committer || victim == proposer {
				victim = pick()
				if len(a) < 3 {
					break
				}
			}
			if victim == committer {
				continue
			}
			prop, err := proposer.g.ProposeRemove(victim.g.OwnLeafIndex())
			require.NoError(t, err)
			broadcast(t, proposer, prop, members)
			pc, err := committer.g.Commit(nil)
			require.NoError(t, err)
			deliverCommit(t, committer, pc, members)
			removed = append(removed, victim)
		case op == 4:
			// A full-path update.
			committer := pick()
			pc, err := committer.g.Commit(&CommitOptions{ForcePath: true})
			require.NoError(t, err)
			deliverCommit(t, committer, pc, members)
		default:
			// Two members commit concurrently; the first one delivered wins
			// and the other discards its pending commit.
			c1, c2 := pick(), pick()
			if c1 == c2 {
				continue
			}
			pc1, err := c1.g.Commit(&CommitOptions{ForcePath: true})
			require.NoError(t, err)
			if _, err := c2.g.Commit(&CommitOptions{ForcePath: true}); err != nil {
				t.Fatal(err)
			}
			deliverCommit(t, c1, pc1, members)
		}
		checkAgreement(t, members)
		// Every removed member fails to read a current message.
		if len(removed) > 0 {
			s := pick()
			msg, err := s.g.EncryptApplication([]byte("after removal"), nil)
			require.NoError(t, err)
			wire := transmit(t, msg)
			for _, r := range removed {
				if _, err := r.g.Process(wire); err == nil {
					t.Fatalf("step %d: removed %s read a later message", step, r.name)
				} else if !errors.Is(err, ErrInactive) && !knownError(err) {
					t.Fatalf("unexpected error: %v", err)
				}
			}
			// Consume the message at the other members to keep ratchets tidy.
			for _, m := range active() {
				if m != s {
					if _, err := m.g.Process(wire); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// broadcast delivers a proposal from sender to every other active member.
func broadcast(t *testing.T, sender *member, msg *MLSMessage, ms []*member) {
	t.Helper()
	wire := transmit(t, msg)
	for _, m := range ms {
		if m == sender || !m.g.Active() {
			continue
		}
		if _, err := m.g.Process(wire); err != nil {
			t.Fatalf("%s processing proposal from %s: %v", m.name, sender.name, err)
		}
	}
}
