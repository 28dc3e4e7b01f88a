package treekem

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/microchat/e2ee/hpke"

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
	// A node of a nil chunk (see nodeStore) has nowhere to cache its hash
	// without allocating the chunk, which would make a sparse tree cost
	// its width. The hash of a subtree lying wholly in nil chunks depends
	// only on its position, so it is cached beside the tree for the
	// higher subtrees; the rest is recomputed when needed.
	nilNode := t.nodes.isNil(n)
	level := treemath.Level(n.tm())
	var key blankKey
	if nilNode && level >= blankCacheLevel {
		lo, hi := n-(NodeIndex(1)<<level-1), n+(NodeIndex(1)<<level-1)
		if t.nodes.rangeNil(lo, hi) {
			key = blankKey{suite: t.suite, node: n}
			if h, ok := blankHashes.Load(key); ok {
				return h.([]byte)
			}
		}
	}
	var h []byte
	if n.IsLeaf() {
		h = t.leafHash(n.Leaf(), nd.leaf)
	} else {
		l := t.nodeHash(NodeIndex(treemath.Left(n.tm())))
		r := t.nodeHash(NodeIndex(treemath.Right(n.tm(), t.LeafCount())))
		h = t.parentHashInput(nd.parent, l, r)
	}
	switch {
	case !nilNode:
		t.nodes.mut(n).hash = h
	case key != blankKey{}:
		storeBlankHash(key, h)
	}
	return h
}

// blankCacheLevel is the lowest level of the all-blank subtrees whose
// hashes are cached in blankHashes: lower ones are recomputed, at most
// 2^blankCacheLevel hashes each.
const blankCacheLevel = 5

// blankKey names an all-blank subtree: its hash depends only on the
// cipher suite and the position of its root (RFC 9420, Section 7.8: blank
// leaves hash their index).
type blankKey struct {
	suite hpke.CipherSuite
	node  NodeIndex
}

// blankHashes caches the hashes of all-blank subtrees of nil chunks, for
// every tree: they are the same in every tree. It holds at most
// maxBlankHashes entries; past that, they are recomputed.
var (
	blankHashes    sync.Map // blankKey -> []byte
	blankHashCount atomic.Int64
	maxBlankHashes = int64(1 << 16)
)

func storeBlankHash(k blankKey, h []byte) {
	if blankHashCount.Load() >= maxBlankHashes {
		return
	}
	if _, loaded := blankHashes.LoadOrStore(k, h); !loaded {
		blankHashCount.Add(1)
	}
}

// leafHash hashes a TreeHashInput for a leaf (RFC 9420, Section 7.8).
func (t *Tree) leafHash(l LeafIndex, leaf *LeafNode) []byte {
	return t.hashOf(func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(NodeTypeLeaf))
		b.AddUint32(uint32(l))
		wire.AddOptional(b, leaf != nil, func(b *cryptobyte.Builder) { leaf.Marshal(b) })
	})
}

// parentHashInput hashes a TreeHashInput for a parent (RFC 9420, Section
// 7.8).
func (t *Tree) parentHashInput(p *ParentNode, left, right []byte) []byte {
	return t.hashOf(func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(NodeTypeParent))
		wire.AddOptional(b, p != nil, func(b *cryptobyte.Builder) { p.Marshal(b) })
		wire.AddVarintBytes(b, left)
		wire.AddVarintBytes(b, right)
	})
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
	return t.hashOf(func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, encryptionKey)
		wire.AddVarintBytes(b, parentHash)
		wire.AddVarintBytes(b, siblingHash)
	})
}

// hashOf hashes the encoding written by f, built in a pooled scratch
// buffer: hashing a node costs no allocation but the hash. It panics only
// on a field too long to encode, like wire.MustMarshal.
func (t *Tree) hashOf(f func(*cryptobyte.Builder)) []byte {
	var h []byte
	if err := wire.Use(f, func(b []byte) { h = t.suite.Hash(b) }); err != nil {
		panic(err)
	}
	return h
}
