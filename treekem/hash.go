package treekem

import (
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
)

// TreeHash returns the tree hash of the root (RFC 9420, Section 7.8), or
// nil for an empty tree. Hashes are cached per node; a change to the tree
// recomputes only the hashes on the changed node's path to the root. The
// caller must not modify the result.
func (t *Tree) TreeHash() []byte {
	if t.nodes.width == 0 {
		return nil
	}
	root := NodeIndex(treemath.Root(t.LeafCount()))
	if t.nodes.at(root).hash == nil {
		t.fillHashes()
	}
	return t.nodeHash(root)
}

// NodeTreeHash returns the tree hash of the subtree rooted at n (RFC 9420,
// Section 7.8), or nil if n is out of range. The caller must not modify the
// result.
func (t *Tree) NodeTreeHash(n NodeIndex) []byte {
	if uint64(n) >= uint64(t.nodes.width) {
		return nil
	}
	return t.nodeHash(n)
}

func (t *Tree) nodeHash(n NodeIndex) []byte {
	nd := t.nodes.at(NodeIndex(n))
	if nd.hash != nil {
		return nd.hash
	}
	var h []byte
	if n.IsLeaf() {
		h = t.leafHash(n.Leaf(), nd.leaf)
	} else {
		l := t.nodeHash(NodeIndex(treemath.Left(n.tm())))
		r := t.nodeHash(NodeIndex(treemath.Right(n.tm(), t.LeafCount())))
		h = t.parentHashInput(nd.parent, l, r)
	}
	t.nodes.mut(n).hash = h
	return h
}

// leafHash hashes a TreeHashInput for a leaf (RFC 9420, Section 7.8).
func (t *Tree) leafHash(l LeafIndex, leaf *LeafNode) []byte {
	return t.suite.Hash(wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(NodeTypeLeaf))
		b.AddUint32(uint32(l))
		wire.AddOptional(b, leaf != nil, func(b *cryptobyte.Builder) { leaf.Marshal(b) })
	}))
}

// parentHashInput hashes a TreeHashInput for a parent (RFC 9420, Section
// 7.8).
func (t *Tree) parentHashInput(p *ParentNode, left, right []byte) []byte {
	return t.suite.Hash(wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(NodeTypeParent))
		wire.AddOptional(b, p != nil, func(b *cryptobyte.Builder) { p.Marshal(b) })
		wire.AddVarintBytes(b, left)
		wire.AddVarintBytes(b, right)
	}))
}

// hashExcluding returns the tree hash of n in the tree where every leaf in
// excluded (sorted) is blank and removed from all unmerged_leaves lists: the
// "original sibling tree hash" of RFC 9420, Section 7.9. Subtrees holding no
// excluded leaf reuse the cached hashes.
func (t *Tree) hashExcluding(n NodeIndex, excluded []LeafIndex) []byte {
	lo, hi := subtreeLeaves(n)
	i, _ := slices.BinarySearch(excluded, lo)
	if i == len(excluded) || excluded[i] >= hi {
		return t.nodeHash(n)
	}
	if n.IsLeaf() {
		return t.leafHash(n.Leaf(), nil)
	}
	l := t.hashExcluding(NodeIndex(treemath.Left(n.tm())), excluded)
	r := t.hashExcluding(NodeIndex(treemath.Right(n.tm(), t.LeafCount())), excluded)
	p := t.nodes.at(NodeIndex(n)).parent
	if p != nil {
		q := *p
		q.UnmergedLeaves = nil
		for _, u := range p.UnmergedLeaves {
			if _, found := slices.BinarySearch(excluded, u); !found {
				q.UnmergedLeaves = append(q.UnmergedLeaves, u)
			}
		}
		p = &q
	}
	return t.parentHashInput(p, l, r)
}

// parentHash computes the parent hash of a parent node with the given key
// and parent_hash field and the original tree hash of its copath child
// (RFC 9420, Section 7.9).
func (t *Tree) parentHash(encryptionKey, parentHash, siblingHash []byte) []byte {
	return t.suite.Hash(wire.MustMarshal(func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, encryptionKey)
		wire.AddVarintBytes(b, parentHash)
		wire.AddVarintBytes(b, siblingHash)
	}))
}
