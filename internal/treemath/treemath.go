// Package treemath implements the array representation of left-balanced
// binary trees of RFC 9420, Appendix C.
//
// Nodes are numbered left to right in in-order traversal: leaves have even
// indexes and parents odd ones. Leaf i is node 2i. The functions take the
// number of leaves of the tree where the answer depends on the tree's size;
// they work for any leaf count, not only powers of two, although MLS trees
// always have a power-of-two number of leaves (RFC 9420, Section 7.7).
package treemath

import "math/bits"

// NodeIndex is the index of a node in the array representation of a tree.
type NodeIndex uint32

// LeafIndex is the index of a leaf among the leaves of a tree.
type LeafIndex uint32

// MaxLeaf is the largest leaf index whose node index fits in a NodeIndex.
const MaxLeaf LeafIndex = 1<<31 - 1

// InvalidNode is what [LeafIndex.Node] returns for a leaf index above
// [MaxLeaf]: odd, and beyond the widest possible tree, so never a node.
const InvalidNode NodeIndex = 1<<32 - 1

// Node returns the node index of leaf l, 2*l, or [InvalidNode] for l above
// [MaxLeaf]: the conversion never wraps around to another leaf's node.
func (l LeafIndex) Node() NodeIndex {
	if l > MaxLeaf {
		return InvalidNode
	}
	return NodeIndex(2 * l)
}

// IsLeaf reports whether x is a leaf node.
func (x NodeIndex) IsLeaf() bool { return x&1 == 0 }

// Leaf returns the leaf index of x, which must be a leaf node.
func (x NodeIndex) Leaf() LeafIndex { return LeafIndex(x >> 1) }

// Log2 returns floor(log2(x)), and 0 for x == 0.
func Log2(x uint32) uint32 {
	if x == 0 {
		return 0
	}
	return uint32(bits.Len32(x)) - 1
}

// Level returns the level of node x in the tree: 0 for leaves, and one more
// than its children's level for a parent. It is the number of trailing one
// bits of x.
func Level(x NodeIndex) uint32 {
	return uint32(bits.TrailingZeros32(^uint32(x)))
}

// NodeWidth returns the number of nodes needed to represent a tree with n
// leaves: 2n - 1, or 0 for an empty tree.
func NodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// Root returns the index of the root node of a tree with n leaves, n > 0.
func Root(n uint32) NodeIndex {
	w := NodeWidth(n)
	return NodeIndex(1<<Log2(w) - 1)
}

// Left returns the left child of the parent node x. It returns x itself for
// a leaf; callers check [NodeIndex.IsLeaf] first.
func Left(x NodeIndex) NodeIndex {
	k := Level(x)
	if k == 0 {
		return x
	}
	return x ^ (1 << (k - 1))
}

// Right returns the right child of the parent node x in a tree with n leaves,
// descending to the left when the tree's right edge is not full. It returns x
// itself for a leaf.
func Right(x NodeIndex, n uint32) NodeIndex {
	k := Level(x)
	if k == 0 {
		return x
	}
	w := NodeWidth(n)
	r := x ^ (3 << (k - 1))
	for uint32(r) >= w {
		r = Left(r)
	}
	return r
}

// parentStep returns the parent of x in an infinite full tree.
func parentStep(x NodeIndex) NodeIndex {
	k := Level(x)
	b := (x >> (k + 1)) & 1
	return (x | 1<<k) ^ (b << (k + 1))
}

// Parent returns the parent of x in a tree with n leaves. The root is its own
// parent; callers compare with [Root] first.
func Parent(x NodeIndex, n uint32) NodeIndex {
	r := Root(n)
	if x == r {
		return x
	}
	w := NodeWidth(n)
	p := parentStep(x)
	for uint32(p) >= w {
		p = parentStep(p)
	}
	return p
}

// Sibling returns the other child of x's parent in a tree with n leaves.
// The root is its own sibling.
func Sibling(x NodeIndex, n uint32) NodeIndex {
	p := Parent(x, n)
	if p == x {
		return x
	}
	if x < p {
		return Right(p, n)
	}
	return Left(p)
}

// DirectPath returns the direct path of x in a tree with n leaves: its
// parent, its parent's parent, and so on up to and including the root
// (RFC 9420, Section 4.1). The direct path of the root is empty.
func DirectPath(x NodeIndex, n uint32) []NodeIndex {
	r := Root(n)
	if x == r {
		return nil
	}
	path := make([]NodeIndex, 0, Log2(NodeWidth(n))+1)
	for x != r {
		x = Parent(x, n)
		path = append(path, x)
	}
	return path
}

// Copath returns the copath of x in a tree with n leaves: the sibling of x
// and of each node of its direct path except the root (RFC 9420, Section
// 4.1). The copath of the root is empty.
func Copath(x NodeIndex, n uint32) []NodeIndex {
	r := Root(n)
	if x == r {
		return nil
	}
	path := make([]NodeIndex, 0, Log2(NodeWidth(n))+1)
	for x != r {
		path = append(path, Sibling(x, n))
		x = Parent(x, n)
	}
	return path
}

// IsAncestor reports whether a is a strict ancestor of x. A node at level k
// spans the nodes within 2^k - 1 of its own index.
func IsAncestor(a, x NodeIndex) bool {
	if a == x {
		return false
	}
	span := NodeIndex(1)<<Level(a) - 1
	return x+span >= a && x <= a+span
}
