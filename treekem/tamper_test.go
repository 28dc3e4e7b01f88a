package treekem_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/microchat/e2ee/treekem"
)

// flip returns a copy of b with one bit flipped, chosen by seed.
func flip(b []byte, seed int) []byte {
	c := append([]byte(nil), b...)
	bit := (seed*131 + 7) % (len(c) * 8)
	c[bit/8] ^= 1 << (bit % 8)
	return c
}

// tamper is one change to a tree: it modifies a freshly parsed tree in
// place and reports whether it applied.
type tamper struct {
	name string
	want []error // the error must match one of these, and ErrInvalidTree
	f    func(tree *treekem.Tree, seed int) bool
}

var tampers = []tamper{
	{"leaf-signature", []error{treekem.ErrInvalidSignature}, func(tree *treekem.Tree, seed int) bool {
		return onLeaf(tree, seed, func(l *treekem.LeafNode) { l.Signature = flip(l.Signature, seed) })
	}},
	{"leaf-encryption-key", []error{treekem.ErrInvalidSignature}, func(tree *treekem.Tree, seed int) bool {
		return onLeaf(tree, seed, func(l *treekem.LeafNode) { l.EncryptionKey = flip(l.EncryptionKey, seed) })
	}},
	// A flipped signature key either fails the signature or no longer decodes.
	{"leaf-signature-key", []error{treekem.ErrInvalidSignature, treekem.ErrMalformed}, func(tree *treekem.Tree, seed int) bool {
		return onLeaf(tree, seed, func(l *treekem.LeafNode) { l.SignatureKey = flip(l.SignatureKey, seed) })
	}},
	{"leaf-parent-hash", []error{treekem.ErrInvalidSignature}, func(tree *treekem.Tree, seed int) bool {
		return onLeaf(tree, seed, func(l *treekem.LeafNode) {
			if len(l.ParentHash) > 0 {
				l.ParentHash = flip(l.ParentHash, seed)
			}
		}, func(l *treekem.LeafNode) bool { return len(l.ParentHash) > 0 })
	}},
	{"parent-encryption-key", []error{treekem.ErrParentHashMismatch, hpke.ErrInvalidPublicKey}, func(tree *treekem.Tree, seed int) bool {
		return onParent(tree, seed, func(p *treekem.ParentNode) bool {
			p.EncryptionKey = flip(p.EncryptionKey, seed)
			return true
		})
	}},
	{"parent-hash", []error{treekem.ErrParentHashMismatch}, func(tree *treekem.Tree, seed int) bool {
		return onParent(tree, seed, func(p *treekem.ParentNode) bool {
			if len(p.ParentHash) == 0 {
				return false
			}
			p.ParentHash = flip(p.ParentHash, seed)
			return true
		})
	}},
	{"unmerged-leaf", []error{treekem.ErrInvalidTree}, func(tree *treekem.Tree, seed int) bool {
		return onParent(tree, seed, func(p *treekem.ParentNode) bool {
			if len(p.UnmergedLeaves) == 0 {
				return false
			}
			i := seed % len(p.UnmergedLeaves)
			p.UnmergedLeaves[i] ^= treekem.LeafIndex(1) << (seed % 32)
			return true
		})
	}},
}

// onLeaf applies f to the seed-th non-blank leaf that satisfies the
// optional filter.
func onLeaf(tree *treekem.Tree, seed int, f func(*treekem.LeafNode), filter ...func(*treekem.LeafNode) bool) bool {
	var leaves []*treekem.LeafNode
	for _, l := range tree.Leaves() {
		if len(filter) == 0 || filter[0](l) {
			leaves = append(leaves, l)
		}
	}
	if len(leaves) == 0 {
		return false
	}
	f(leaves[seed%len(leaves)])
	return true
}

// onParent applies f to the parents, starting at the seed-th one, until f
// reports that it changed one.
func onParent(tree *treekem.Tree, seed int, f func(*treekem.ParentNode) bool) bool {
	var parents []*treekem.ParentNode
	for n := uint32(1); n < tree.Width(); n += 2 {
		if p := tree.ParentNode(treekem.NodeIndex(n)); p != nil {
			parents = append(parents, p)
		}
	}
	for i := range parents {
		if f(parents[(seed+i)%len(parents)]) {
			return true
		}
	}
	return false
}

// TestTamperedTrees flips a bit in a signature, public key, parent hash or
// unmerged leaf of each tree-validation vector and checks that Validate
// rejects the result with a matchable error. Every tree is tampered once
// per field kind, at a node chosen by the case index, so that across the
// file every position is exercised.
func TestTamperedTrees(t *testing.T) {
	vectors := vectortest.Load[treeValidationVector](t, "tree-validation.json")
	applied := map[string]int{}
	for i, v := range vectors {
		for _, tm := range tampers {
			// A fresh parse each time: tampering modifies nodes in place,
			// which is allowed only because the tree is re-encoded below.
			tree, err := treekem.ParseTree(v.CipherSuite, v.Tree)
			if err != nil {
				t.Fatal(err)
			}
			if !tm.f(tree, i) {
				continue
			}
			applied[tm.name]++
			t.Run(fmt.Sprintf("%s/%s", tm.name, strconv.Itoa(i)), func(t *testing.T) {
				tampered, err := treekem.ParseTree(v.CipherSuite, tree.Bytes())
				if err != nil {
					return // rejected at parse time: fine
				}
				err = tampered.Validate(&treekem.ValidateOptions{GroupID: v.GroupID, Now: vectorNow})
				if !errors.Is(err, treekem.ErrInvalidTree) {
					t.Fatalf("Validate = %v, want ErrInvalidTree", err)
				}
				for _, want := range tm.want {
					if errors.Is(err, want) {
						return
					}
				}
				t.Errorf("Validate = %v, want one of %v", err, tm.want)
			})
		}
	}
	for _, tm := range tampers {
		if applied[tm.name] == 0 {
			t.Errorf("tamper %s never applied", tm.name)
		}
	}
}
