package mls

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Hostile inputs (issue M11): a crafted message must cost at most a small
// multiple of its size in memory, through parsing and processing, and grow
// linearly in time. Each case is built at two sizes; the test checks the
// bytes allocated against hostileFactor times the input plus
// hostileSlack, and BenchmarkHostile reports the time at four times those
// sizes, so that a quadratic regression shows as a ratio of about 16
// between the sizes rather than 4. treekem/hostile_test.go has the cases of
// the tree's own structures.

const (
	hostileFactor = 16
	hostileSlack  = 256 << 10
)

// allocated returns the bytes f allocates. The tests that call it do not
// run in parallel with others.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// hostileGroup is a two-member group: alice, who sends the hostile
// messages (correctly signed and MACed, so that the checks under test are
// the ones that fire), and bob, who processes them.
type hostileGroup struct {
	alice, bob *member
	cfg        *Config
}

// anyPSK is a PSKStore that knows every external PSK.
type anyPSK struct{}

func (anyPSK) ExternalPSK(id []byte) ([]byte, error) { return make([]byte, 32), nil }
func (anyPSK) ResumptionPSK([]byte, uint64) ([]byte, error) {
	return nil, ErrNotFound
}

func newHostileGroup(tb testing.TB) *hostileGroup {
	tb.Helper()
	cs := benchSuite
	h := &hostileGroup{alice: newMember(tb, cs, "alice"), bob: newMember(tb, cs, "bob"), cfg: &Config{PSKs: anyPSK{}}}
	var err error
	h.alice.g, err = NewGroup(cs, h.alice.cred, h.alice.sig, nil, h.cfg)
	require.NoError(tb, err)
	kp := h.bob.keyPackage(tb, cs)
	pc, err := h.alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
	require.NoError(tb, err)
	require.NoError(tb, h.alice.g.MergePendingCommit(pc))
	h.bob.g, err = Join(transmit(tb, pc.Welcome), kp, nil, h.cfg)
	require.NoError(tb, err)
	return h
}

// signedCommit returns commit framed, signed and MACed by alice as a
// PublicMessage of the current epoch.
func (h *hostileGroup) signedCommit(tb testing.TB, commit *Commit) []byte {
	tb.Helper()
	g := h.alice.g
	c := g.framedContent(nil)
	c.ContentType = ContentTypeCommit
	c.Commit = commit
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: c}
	require.NoError(tb, signContent(g.cs, g.sigPriv, ac, g.state.ctxBytes))
	ac.Auth.ConfirmationTag = make([]byte, g.cs.HashSize())
	msg, err := g.protect(ac)
	require.NoError(tb, err)
	data, err := msg.Bytes()
	require.NoError(tb, err)
	return data
}

// process parses data and has bob process it.
func (h *hostileGroup) process(data []byte) error {
	m, err := ParseMessage(data)
	if err != nil {
		return err
	}
	_, err = h.bob.g.Process(m)
	return err
}

type hostileCase struct {
	name  string
	sizes [2]int
	build func(tb testing.TB, size int) (input []byte, run func() error)
	// factor overrides hostileFactor where the public structures cannot
	// be made smaller than this multiple of their smallest encoding.
	factor int
}

// blankTreeGroupInfo returns a GroupInfo of h's group whose ratchet tree
// holds alice's leaf, about size blank nodes and bob's leaf, with the
// signature of the real GroupInfo, which no longer matches.
func (h *hostileGroup) blankTreeGroupInfo(tb testing.TB, size int) []byte {
	tb.Helper()
	msg, err := h.alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(tb, err)
	gi := *msg.GroupInfo
	tree := h.alice.g.state.tree
	data := wire.MustMarshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			b.AddUint8(1)
			b.AddUint8(uint8(treekem.NodeTypeLeaf))
			tree.Leaf(0).Marshal(b)
			b.AddBytes(make([]byte, max(size, 2)&^1-1))
			b.AddUint8(1)
			b.AddUint8(uint8(treekem.NodeTypeLeaf))
			tree.Leaf(1).Marshal(b)
		})
	})
	gi.Extensions = []Extension{{Type: ExtensionRatchetTree, Data: data}}
	for _, e := range msg.GroupInfo.Extensions {
		if e.Type != ExtensionRatchetTree {
			gi.Extensions = append(gi.Extensions, e)
		}
	}
	out, err := (&MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: &gi}).Bytes()
	require.NoError(tb, err)
	return out
}

var hostileCases = []hostileCase{
	{
		// An outsider's forged GroupInfo: rejected by its signature before
		// the tree is decoded, so it costs about its own size.
		name:  "groupinfo-blank-tree",
		sizes: [2]int{256 << 10, 1 << 20},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			h := newHostileGroup(tb)
			data := h.blankTreeGroupInfo(tb, size)
			carol := newMember(tb, benchSuite, "carol")
			return data, func() error {
				m, err := ParseMessage(data)
				if err != nil {
					return err
				}
				_, _, err = JoinExternal(m, carol.cred, carol.sig, nil, nil)
				if !errors.Is(err, ErrInvalidSignature) {
					return fmt.Errorf("want ErrInvalidSignature, got %w", err)
				}
				return nil
			}
		},
		factor: 4,
	},
	{
		// A Welcome with many of the smallest entries accepted, none for
		// the joiner.
		name:  "welcome-secrets",
		sizes: [2]int{256 << 10, 1 << 20},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			cs := benchSuite
			kp := newMember(tb, cs, "joiner").keyPackage(tb, cs)
			w := &Welcome{CipherSuite: cs, EncryptedGroupInfo: []byte("encrypted group info")}
			ref := make([]byte, cs.HashSize())
			for range size / (6 + len(ref)) {
				w.Secrets = append(w.Secrets, EncryptedGroupSecrets{NewMember: ref, EncryptedGroupSecrets: HPKECiphertext{KEMOutput: []byte{1}, Ciphertext: []byte{2}}})
			}
			data, err := (&MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: w}).Bytes()
			require.NoError(tb, err)
			return data, func() error {
				m, err := ParseMessage(data)
				if err != nil {
					return err
				}
				_, err = Join(m, kp, nil, nil)
				if !errors.Is(err, ErrNotMember) {
					return fmt.Errorf("want ErrNotMember, got %w", err)
				}
				return nil
			}
		},
	},
	{
		// The Welcome of the issue: empty entries, now malformed.
		name:  "welcome-empty-secrets",
		sizes: [2]int{256 << 10, 1 << 20},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			data := wire.MustMarshal(func(b *cryptobyte.Builder) {
				b.AddUint16(uint16(MLS10))
				b.AddUint16(uint16(WireFormatWelcome))
				b.AddUint16(uint16(benchSuite))
				wire.AddVarintBytes(b, make([]byte, size/3*3))
				wire.AddVarintBytes(b, nil)
			})
			return data, func() error {
				if _, err := ParseMessage(data); !errors.Is(err, ErrMalformed) {
					return fmt.Errorf("want ErrMalformed, got %w", err)
				}
				return nil
			}
		},
	},
	{
		// A member's commit of many proposal references of the smallest
		// size accepted, none of them known.
		name:  "commit-refs",
		sizes: [2]int{256 << 10, 1 << 20},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			h := newHostileGroup(tb)
			h.bob.g.cfg.Limits.MaxProposalsPerCommit = -1
			commit := &Commit{Proposals: make([]ProposalOrRef, size/(2+minRefSize))}
			for i := range commit.Proposals {
				ref := make(ProposalRef, minRefSize)
				ref[0] = byte(i)
				commit.Proposals[i] = ProposalOrRef{Type: ProposalOrRefReference, Reference: ref}
			}
			data := h.signedCommit(tb, commit)
			return data, func() error { return h.process(data) }
		},
	},
	{
		// A member's commit of many empty custom proposals. A by-value
		// proposal costs a ProposalOrRef and a Proposal (128 bytes) for
		// four bytes of input: 32x is the floor of the public types, and
		// resolving, applying and hashing the list add about 18x. The default
		// Limits.MaxProposalsPerCommit bounds the total.
		name:  "commit-custom",
		sizes: [2]int{256 << 10, 1 << 20},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			h := newHostileGroup(tb)
			h.bob.g.cfg.Limits.MaxProposalsPerCommit = -1
			commit := &Commit{Proposals: make([]ProposalOrRef, size/4)}
			p := &Proposal{Type: 0xf0f0}
			for i := range commit.Proposals {
				commit.Proposals[i] = ProposalOrRef{Type: ProposalOrRefProposal, Proposal: p}
			}
			data := h.signedCommit(tb, commit)
			return data, func() error { return h.process(data) }
		},
		factor: 56,
	},
	{
		// An external commit injecting many PSKs: duplicates are found
		// with a map. Each PSK (about 42 bytes) costs three KDF calls in
		// the key schedule, whose HMAC states the standard library
		// allocates: about 1 KiB per PSK. The default
		// Limits.MaxPSKsPerCommit bounds the total.
		name:  "external-commit-psks",
		sizes: [2]int{64 << 10, 256 << 10},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			h := newHostileGroup(tb)
			gi, err := h.alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
			require.NoError(tb, err)
			carol := newMember(tb, benchSuite, "carol")
			var psks []PreSharedKeyID
			for i := range size / 42 {
				psks = append(psks, PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: fmt.Appendf(nil, "%d", i)})
			}
			cfg := *h.cfg
			cfg.Limits.MaxPSKsPerCommit = -1
			h.bob.g.cfg.Limits.MaxPSKsPerCommit = -1
			_, msg, err := JoinExternal(transmit(tb, gi), carol.cred, carol.sig, &ExternalJoinOptions{PSKs: psks}, &cfg)
			require.NoError(tb, err)
			data, err := msg.Bytes()
			require.NoError(tb, err)
			return data, func() error { return h.process(data) }
		},
		factor: 100,
	},
}

// TestHostileLimits checks that the default Limits reject a commit with
// too many proposals or PSKs, with an error matching ErrLimit.
func TestHostileLimits(t *testing.T) {
	h := newHostileGroup(t)
	commit := &Commit{Proposals: make([]ProposalOrRef, DefaultMaxProposalsPerCommit+1)}
	for i := range commit.Proposals {
		ref := make(ProposalRef, minRefSize)
		ref[0], ref[1], ref[2] = byte(i), byte(i>>8), byte(i>>16)
		commit.Proposals[i] = ProposalOrRef{Type: ProposalOrRefReference, Reference: ref}
	}
	err := h.process(h.signedCommit(t, commit))
	require.ErrorIs(t, err, ErrLimit)
	var v *ValidationError
	require.ErrorAs(t, err, &v)

	gi, err := h.alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	carol := newMember(t, benchSuite, "carol")
	var psks []PreSharedKeyID
	for i := range DefaultMaxPSKsPerCommit + 1 {
		psks = append(psks, PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: fmt.Appendf(nil, "%d", i)})
	}
	_, _, err = JoinExternal(transmit(t, gi), carol.cred, carol.sig, &ExternalJoinOptions{PSKs: psks}, h.cfg)
	require.ErrorIs(t, err, ErrLimit)
	cfg := *h.cfg
	cfg.Limits.MaxPSKsPerCommit = -1
	_, msg, err := JoinExternal(transmit(t, gi), carol.cred, carol.sig, &ExternalJoinOptions{PSKs: psks}, &cfg)
	require.NoError(t, err)
	_, err = h.bob.g.Process(transmit(t, msg))
	require.ErrorIs(t, err, ErrLimit)
}

func TestHostileInputs(t *testing.T) {
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			factor := hostileFactor
			if c.factor != 0 {
				factor = c.factor
			}
			for _, size := range c.sizes {
				input, run := c.build(t, size)
				// The first run fills the pools of scratch buffers
				// (internal/wire); the second measures the steady state.
				var err error
				_ = run()
				got := allocated(func() { err = run() })
				t.Logf("size %d: %d bytes allocated (%.1fx), err=%v", len(input), got, float64(got)/float64(len(input)), err)
				require.LessOrEqual(t, got, uint64(factor*len(input)+hostileSlack),
					"%s at %d bytes allocated %.1fx its input", c.name, len(input), float64(got)/float64(len(input)))
				var v *ValidationError
				if err != nil && !knownError(err) && !errors.As(err, &v) {
					t.Fatalf("error outside the known set: %v", err)
				}
			}
		})
	}
}

func BenchmarkHostile(b *testing.B) {
	for _, c := range hostileCases {
		for _, size := range c.sizes {
			size *= 4
			b.Run(fmt.Sprintf("%s/size=%d", c.name, size), func(b *testing.B) {
				input, run := c.build(b, size)
				b.SetBytes(int64(len(input)))
				b.ReportAllocs()
				for b.Loop() {
					_ = run()
				}
			})
		}
	}
}

// TestForgedGroupInfoRejectedBeforeDecode checks that JoinExternal checks
// the GroupInfo's signature before it decodes the tree: a forged GroupInfo
// whose tree is malformed after the signer's leaf is rejected for its
// signature, which it could not be if the tree were decoded first; and the
// same tree correctly signed is rejected as malformed.
func TestForgedGroupInfoRejectedBeforeDecode(t *testing.T) {
	h := newHostileGroup(t)
	msg, err := h.alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	gi := *msg.GroupInfo
	tree := h.alice.g.state.tree
	bad := wire.MustMarshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			b.AddUint8(1)
			b.AddUint8(uint8(treekem.NodeTypeLeaf))
			tree.Leaf(0).Marshal(b)
			b.AddBytes(make([]byte, 1<<16))
			b.AddUint8(1)
			b.AddUint8(9) // no such node type
		})
	})
	gi.Extensions = []Extension{{Type: ExtensionRatchetTree, Data: bad}}
	for _, e := range msg.GroupInfo.Extensions {
		if e.Type != ExtensionRatchetTree {
			gi.Extensions = append(gi.Extensions, e)
		}
	}
	carol := newMember(t, benchSuite, "carol")
	forged := &MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: &gi}
	_, _, err = JoinExternal(transmit(t, forged), carol.cred, carol.sig, nil, nil)
	require.ErrorIs(t, err, ErrInvalidSignature)
	require.NotErrorIs(t, err, ErrMalformed)

	require.NoError(t, gi.sign(h.alice.g.cs, h.alice.sig))
	_, _, err = JoinExternal(transmit(t, forged), carol.cred, carol.sig, nil, nil)
	require.ErrorIs(t, err, ErrMalformed)
}
