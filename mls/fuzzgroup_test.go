package mls

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzGroup is a three-member group (alice, bob, carol) used by FuzzProcess
// and the tampering tests, seen from carol, with valid messages from alice
// and bob of carol's current epoch.
type fuzzGroup struct {
	tb      testing.TB
	g       *Group
	seeds   [][]byte
	mutated bool
}

func buildFuzzGroup(tb testing.TB) (*Group, [][]byte) {
	tb.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice, bob, carol := newMember(tb, cs, "alice"), newMember(tb, cs, "bob"), newMember(tb, cs, "carol")
	var err error
	if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil); err != nil {
		tb.Fatal(err)
	}
	bobKP, carolKP := bob.keyPackage(tb, cs), carol.keyPackage(tb, cs)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{bobKP.KeyPackage, carolKP.KeyPackage}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := alice.g.MergePendingCommit(pc); err != nil {
		tb.Fatal(err)
	}
	if bob.g, err = Join(pc.Welcome, bobKP, nil, nil); err != nil {
		tb.Fatal(err)
	}
	if carol.g, err = Join(pc.Welcome, carolKP, nil, nil); err != nil {
		tb.Fatal(err)
	}
	var seeds [][]byte
	add := func(m *MLSMessage, err error) {
		if err != nil {
			tb.Fatal(err)
		}
		data, err := m.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	add(alice.g.EncryptApplication([]byte("hello carol"), []byte("ad")))
	add(bob.g.ProposeRemove(0))
	add(bob.g.ProposeUpdate())
	commit, err := alice.g.Commit(&CommitOptions{ForcePath: true, SkipCached: true})
	add(commit.Commit, err)
	bob.g.cfg.Handshake = HandshakePrivate
	add(bob.g.ProposeRemove(0))
	commit, err = bob.g.Commit(&CommitOptions{Remove: []LeafIndex{0}, SkipCached: true})
	add(commit.Commit, err)
	return carol.g, seeds
}

func newFuzzGroup(tb testing.TB) *fuzzGroup {
	g, seeds := buildFuzzGroup(tb)
	return &fuzzGroup{tb: tb, g: g, seeds: seeds}
}

// fresh returns the fixture's group, rebuilt if an earlier input was
// accepted and so changed it (rare under fuzzing).
func (f *fuzzGroup) fresh(t testing.TB) *Group {
	if f.mutated {
		f.g, _ = buildFuzzGroup(t)
		f.mutated = false
	}
	return f.g
}

// TestWriteFuzzSeeds regenerates the committed fuzz seeds of this package.
// It runs only with E2EE_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("E2EE_WRITE_SEEDS") != "1" {
		return
	}
	_, seeds := buildFuzzGroup(t)
	dir := filepath.Join("testdata", "fuzz", "seeds")
	for i, s := range seeds {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("message-%d", i)), s, 0o644))
		m, err := ParseMessage(s)
		if err != nil || m.PublicMessage == nil {
			continue
		}
		c := &m.PublicMessage.Content
		var body []byte
		kind := "proposal"
		if c.Proposal != nil {
			body, err = c.Proposal.Bytes()
		} else if c.Commit != nil {
			body, err = c.Commit.Bytes()
			kind = "commit"
		}
		if err != nil || body == nil {
			continue
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", kind, i)), body, 0o644))
	}
}
