package treekem

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
)

// LeafIndex is the index of a leaf among the leaves of a tree (RFC 9420,
// Section 4.1.1).
type LeafIndex uint32

// NodeIndex is the index of a node in the array representation of a tree:
// leaf i is node 2i, parents are odd (RFC 9420, Appendix C).
type NodeIndex uint32

// MaxLeafIndex is the largest leaf index whose node index (2*l) fits in a
// [NodeIndex]. A tree never has more leaves than that: indexes read from
// the wire above it are out of range of every tree.
const MaxLeafIndex LeafIndex = 1<<31 - 1

// InvalidNode is the node index that [LeafIndex.Node] returns for a leaf
// index above [MaxLeafIndex]. It is odd and beyond the widest possible
// tree (2^32-1 nodes, indexes 0 to 2^32-2), so it is never a node of any
// tree: every [Tree] method treats it as out of range.
const InvalidNode NodeIndex = 1<<32 - 1

// Node returns the node index of leaf l, 2*l (RFC 9420, Appendix C). The
// conversion cannot wrap: for l above [MaxLeafIndex] it returns
// [InvalidNode], which no tree holds, so an index read from the wire can
// never alias another leaf.
func (l LeafIndex) Node() NodeIndex {
	if l > MaxLeafIndex {
		return InvalidNode
	}
	return NodeIndex(2 * l)
}

// IsLeaf reports whether n is a leaf node.
func (n NodeIndex) IsLeaf() bool { return n&1 == 0 }

// Leaf returns the leaf index of n, which must be a leaf node.
func (n NodeIndex) Leaf() LeafIndex { return LeafIndex(n >> 1) }

func (n NodeIndex) tm() treemath.NodeIndex { return treemath.NodeIndex(n) }

// ParentNode is the content of a parent node of the ratchet tree (RFC
// 9420, Section 7.1). UnmergedLeaves must be sorted in increasing order.
//
// A ParentNode placed in a [Tree] must not be modified afterwards: trees
// and their clones share it.
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []LeafIndex
}

// Marshal adds the wire encoding of p to b.
func (p *ParentNode) Marshal(b *cryptobyte.Builder) {
	wire.AddVarintBytes(b, p.EncryptionKey)
	wire.AddVarintBytes(b, p.ParentHash)
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for _, l := range p.UnmergedLeaves {
			b.AddUint32(uint32(l))
		}
	})
}

// Unmarshal reads a parent node from s.
func (p *ParentNode) Unmarshal(s *cryptobyte.String) bool {
	*p = ParentNode{}
	var body cryptobyte.String
	if !wire.ReadVarintBytes(s, &p.EncryptionKey) ||
		!wire.ReadVarintBytes(s, &p.ParentHash) ||
		!wire.ReadVarintPrefixed(s, &body) || len(body)%4 != 0 {
		return false
	}
	if len(body) > 0 {
		p.UnmergedLeaves = make([]LeafIndex, 0, len(body)/4)
	}
	for !body.Empty() {
		var l uint32
		body.ReadUint32(&l)
		p.UnmergedLeaves = append(p.UnmergedLeaves, LeafIndex(l))
	}
	return true
}

// NodeType distinguishes leaves from parents in encodings (RFC 9420,
// Section 7.8).
type NodeType uint8

// Node types of RFC 9420, Section 7.8.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// HPKECiphertext is an HPKE encapsulation and ciphertext (RFC 9420,
// Section 7.6).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

// Marshal adds the wire encoding of c to b.
func (c *HPKECiphertext) Marshal(b *cryptobyte.Builder) {
	wire.AddVarintBytes(b, c.KEMOutput)
	wire.AddVarintBytes(b, c.Ciphertext)
}

// Unmarshal reads an HPKECiphertext from s.
func (c *HPKECiphertext) Unmarshal(s *cryptobyte.String) bool {
	return wire.ReadVarintBytes(s, &c.KEMOutput) && wire.ReadVarintBytes(s, &c.Ciphertext)
}

// UpdatePathNode is one parent node of an [UpdatePath]: its new public key
// and its path secret encrypted to each node of the resolution of the
// copath child (RFC 9420, Section 7.6).
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

// UpdatePath is a committer's new leaf node and the new keys of its
// filtered direct path (RFC 9420, Section 7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

// Marshal adds the wire encoding of p to b.
func (p *UpdatePath) Marshal(b *cryptobyte.Builder) {
	p.LeafNode.Marshal(b)
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for i := range p.Nodes {
			n := &p.Nodes[i]
			wire.AddVarintBytes(b, n.EncryptionKey)
			wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
				for j := range n.EncryptedPathSecret {
					n.EncryptedPathSecret[j].Marshal(b)
				}
			})
		}
	})
}

// Unmarshal reads an UpdatePath from s.
func (p *UpdatePath) Unmarshal(s *cryptobyte.String) bool {
	*p = UpdatePath{}
	if !p.LeafNode.Unmarshal(s) {
		return false
	}
	return wire.ReadVector(s, func(s *cryptobyte.String) bool {
		var n UpdatePathNode
		if !wire.ReadVarintBytes(s, &n.EncryptionKey) {
			return false
		}
		if !wire.ReadVector(s, func(s *cryptobyte.String) bool {
			var c HPKECiphertext
			if !c.Unmarshal(s) {
				return false
			}
			n.EncryptedPathSecret = append(n.EncryptedPathSecret, c)
			return true
		}) {
			return false
		}
		p.Nodes = append(p.Nodes, n)
		return true
	})
}

// ParseUpdatePath decodes a whole UpdatePath from data.
func ParseUpdatePath(data []byte) (*UpdatePath, error) {
	p := new(UpdatePath)
	if err := wire.Parse(data, p.Unmarshal); err != nil {
		return nil, fmt.Errorf("%w: update path: %w", ErrMalformed, err)
	}
	return p, nil
}

// Bytes returns the wire encoding of p. Like [LeafNode.Bytes] it panics
// only on a field too long to encode or an invalid leaf node source.
func (p *UpdatePath) Bytes() []byte {
	return wire.MustMarshal(p.Marshal)
}
