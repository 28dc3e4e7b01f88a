package treekem_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

var benchSuite = hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

var benchGroups sync.Map // int -> func() *group

// benchGroup returns a group of n members whose parent nodes are filled by
// path commits from every other leaf, built once per size. One process
// holds every member's keys, and only the committers apply their own
// paths, which is enough to shape the public tree as a long-lived group's.
func benchGroup(b *testing.B, n int) *group {
	f, _ := benchGroups.LoadOrStore(n, sync.OnceValue(func() *group {
		g := newGroup(b, benchSuite, n)
		for l := 0; l < n; l += 2 {
			g.commitLocal(b, treekem.LeafIndex(l))
		}
		g.tree.TreeHash()
		return g
	}))
	return f.(func() *group)()
}

var benchSizes = []int{2, 100, 1000, 10000}

// BenchmarkUpdatePath measures a committer building an UpdatePath (new
// keys, parent hashes, signed leaf, encryption to the copath) and a
// receiver processing one (leaf validation, merge, parent hash check,
// decryption and derivation up to the root). The receiver is the sender's
// sibling, so it derives every key of the path.
func BenchmarkUpdatePath(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("generate/leaves=%d", n), func(b *testing.B) {
			g := benchGroup(b, n)
			m := g.members[0]
			for b.Loop() {
				c := g.tree.Clone()
				p, err := c.GenerateUpdatePath(0, nil, m.signer, testGroupID, nil)
				if err != nil {
					b.Fatal(err)
				}
				gc := groupContext(benchSuite, testGroupID, 1, c.TreeHash(), nil)
				if _, err := p.Encrypt(gc); err != nil {
					b.Fatal(err)
				}
				p.Erase()
			}
		})
		b.Run(fmt.Sprintf("process/leaves=%d", n), func(b *testing.B) {
			g := benchGroup(b, n)
			c := g.tree.Clone()
			p, err := c.GenerateUpdatePath(0, nil, g.members[0].signer, testGroupID, nil)
			if err != nil {
				b.Fatal(err)
			}
			gc := groupContext(benchSuite, testGroupID, 1, c.TreeHash(), nil)
			up, err := p.Encrypt(gc)
			if err != nil {
				b.Fatal(err)
			}
			priv := g.members[1].private
			opts := g.opts()
			for b.Loop() {
				r := g.tree.Clone()
				if err := r.MergeUpdatePath(0, up, nil, opts); err != nil {
					b.Fatal(err)
				}
				gc := groupContext(benchSuite, testGroupID, 1, r.TreeHash(), nil)
				if _, _, err := r.DecryptUpdatePath(priv, 0, up, gc, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate measures what a joiner does with a received tree:
// parse it, hash it and validate every leaf and parent.
func BenchmarkValidate(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			g := benchGroup(b, n)
			data := g.tree.Bytes()
			opts := g.opts()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				tree, err := treekem.ParseTree(benchSuite, data)
				if err != nil {
					b.Fatal(err)
				}
				tree.TreeHash()
				if err := tree.Validate(opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClone measures the copy a non-destructive commit starts from.
func BenchmarkClone(b *testing.B) {
	g := benchGroup(b, 10000)
	for b.Loop() {
		g.tree.Clone()
	}
}
