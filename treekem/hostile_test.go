package treekem_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// Hostile inputs (issue M11): for every parser and the processing of what
// it returns, a crafted input must cost at most a small multiple of its
// own size in memory and grow linearly in time. The tests build each
// input at two sizes and check the bytes allocated against
// hostileFactor times the input plus hostileSlack; BenchmarkHostile
// reports the time at both sizes, so that a quadratic regression shows as
// a ratio of about 16 instead of 4.

const (
	hostileFactor = 16
	hostileSlack  = 64 << 10
)

// allocated returns the bytes f allocates. Tests that call it do not run
// in parallel, so the counter sees only f (and the runtime).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// hostileCase builds an input of about size bytes and returns it with the
// work to run on it (parse and process).
type hostileCase struct {
	name  string
	sizes [2]int // bytes, for the test; the benchmark uses 4x these
	build func(tb testing.TB, size int) (input []byte, run func() error)
}

var hostileSuite = hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

// signedLeaf returns m's key_package leaf changed by edit and signed again,
// so that the check under test is the one that fires.
func signedLeaf(tb testing.TB, m *member, edit func(*treekem.LeafNode)) *treekem.LeafNode {
	tb.Helper()
	l := *m.leaf
	edit(&l)
	if err := l.Sign(hostileSuite, m.signer, nil, 0); err != nil {
		tb.Fatal(err)
	}
	return &l
}

// leafCase parses a leaf node and, when it decodes, verifies it and adds
// it to a two-member tree.
func leafCase(edit func(l *treekem.LeafNode, n int), per int) func(tb testing.TB, size int) ([]byte, func() error) {
	return func(tb testing.TB, size int) ([]byte, func() error) {
		g := newGroup(tb, hostileSuite, 2)
		m := newMember(tb, hostileSuite, "hostile")
		leaf := signedLeaf(tb, m, func(l *treekem.LeafNode) { edit(l, size/per) })
		data := leaf.Bytes()
		return data, func() error {
			l, err := treekem.ParseLeafNode(data)
			if err != nil {
				return err
			}
			tree := g.tree.Clone()
			if err := tree.ValidateLeafNode(l, treekem.SourceKeyPackage, 0, g.opts()); err != nil {
				return err
			}
			_, err = tree.AddLeaf(l)
			return err
		}
	}
}

var hostileCases = []hostileCase{
	{
		// An UpdatePath with many empty path nodes.
		name:  "updatepath-nodes",
		sizes: [2]int{64 << 10, 256 << 10},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			m := newMember(tb, hostileSuite, "committer")
			body := make([]byte, size)
			data := wire.MustMarshal(func(b *cryptobyte.Builder) {
				m.leaf.Marshal(b)
				wire.AddVarintBytes(b, body) // size/2 nodes of two zero bytes
			})
			return data, func() error { _, err := treekem.ParseUpdatePath(data); return err }
		},
	},
	{
		// An UpdatePath node with many minimal ciphertexts.
		name:  "updatepath-ciphertexts",
		sizes: [2]int{64 << 10, 256 << 10},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			m := newMember(tb, hostileSuite, "committer")
			cts := make([]byte, 0, size)
			for len(cts)+4 <= size {
				cts = append(cts, 1, 0xee, 1, 0xdd) // the smallest ciphertext accepted
			}
			data := wire.MustMarshal(func(b *cryptobyte.Builder) {
				m.leaf.Marshal(b)
				wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
					wire.AddVarintBytes(b, m.leaf.EncryptionKey)
					wire.AddVarintBytes(b, cts)
				})
			})
			return data, func() error { _, err := treekem.ParseUpdatePath(data); return err }
		},
	},
	{
		// An X.509 credential with many of the smallest certificates
		// accepted: a DER tag and length.
		name:  "leaf-x509-certs",
		sizes: [2]int{64 << 10, 256 << 10},
		build: leafCase(func(l *treekem.LeafNode, n int) {
			l.Credential = treekem.Credential{Type: treekem.CredentialX509, Certificates: make([][]byte, n)}
			for i := range l.Credential.Certificates {
				l.Credential.Certificates[i] = []byte{0x30, 0}
			}
			l.Capabilities.Credentials = append(l.Capabilities.Credentials, treekem.CredentialX509)
		}, 3),
	},
	{
		// A leaf listing every credential type: de-duplication by map.
		name:  "leaf-credential-types",
		sizes: [2]int{32 << 10, 128 << 10},
		build: leafCase(func(l *treekem.LeafNode, n int) {
			l.Capabilities.Credentials = nil
			for i := range min(n, 1<<16-1) {
				l.Capabilities.Credentials = append(l.Capabilities.Credentials, treekem.CredentialType(i+1))
			}
		}, 2),
	},
	{
		// A leaf with many extensions, each listed in its capabilities.
		name:  "leaf-extensions",
		sizes: [2]int{32 << 10, 128 << 10},
		build: leafCase(func(l *treekem.LeafNode, n int) {
			l.Extensions = nil
			l.Capabilities.Extensions = nil
			for i := range min(n, 1<<16-0x100) {
				t := treekem.ExtensionType(0x100 + i)
				l.Extensions = append(l.Extensions, treekem.Extension{Type: t})
				l.Capabilities.Extensions = append(l.Capabilities.Extensions, t)
			}
		}, 5),
	},
	{
		// A sparse tree: one member at each end of a tree of width about
		// 8*size, of which every node but two is blank.
		name:  "tree-sparse",
		sizes: [2]int{64 << 10, 256 << 10},
		build: func(tb testing.TB, size int) ([]byte, func() error) {
			a, b := newMember(tb, hostileSuite, "a"), newMember(tb, hostileSuite, "b")
			data := blankTree(a.leaf, b.leaf, size)
			return data, func() error { _, err := treekem.ParseTree(hostileSuite, data); return err }
		},
	},
}

// blankTree encodes a ratchet tree of leaf a, then blank nodes, then leaf
// b at an even position, about size bytes long.
func blankTree(a, b *treekem.LeafNode, size int) []byte {
	return wire.MustMarshal(func(bld *cryptobyte.Builder) {
		wire.AddVarintPrefixed(bld, func(bld *cryptobyte.Builder) {
			bld.AddUint8(1)
			bld.AddUint8(uint8(treekem.NodeTypeLeaf))
			a.Marshal(bld)
			blanks := max(size, 2) &^ 1 // leaf b lands at an even index
			bld.AddBytes(make([]byte, blanks-1))
			bld.AddUint8(1)
			bld.AddUint8(uint8(treekem.NodeTypeLeaf))
			b.Marshal(bld)
		})
	})
}

func TestHostileInputs(t *testing.T) {
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			for _, size := range c.sizes {
				input, run := c.build(t, size)
				// The first run fills the pools of scratch buffers
				// (internal/wire); the second measures the steady state.
				var err error
				_ = run()
				got := allocated(func() { err = run() })
				t.Logf("size %d: %d bytes allocated (%.1fx), err=%v", len(input), got, float64(got)/float64(len(input)), err)
				require.LessOrEqual(t, got, uint64(hostileFactor*len(input)+hostileSlack),
					"%s at %d bytes allocated %.1fx its input", c.name, len(input), float64(got)/float64(len(input)))
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

// TestSparseTreeMemory checks that a sparse tree (2^18 leaves, two
// members) keeps memory in proportion to its non-blank nodes once decoded
// and hashed: a dense node array alone would take 40 bytes per node, 20
// MiB.
func TestSparseTreeMemory(t *testing.T) {
	a, b := newMember(t, hostileSuite, "a"), newMember(t, hostileSuite, "b")
	data := blankTree(a.leaf, b.leaf, 1<<19-2)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tree, err := treekem.ParseTree(hostileSuite, data)
	require.NoError(t, err)
	require.Equal(t, uint32(1<<18), tree.LeafCount())
	require.NotNil(t, tree.TreeHash())
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d nodes: %d bytes retained", tree.Width(), retained)
	require.Less(t, retained, int64(4<<20))
	runtime.KeepAlive(tree)
}
