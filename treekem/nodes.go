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
	return p.unmarshal(s, copying)
}

func (p *ParentNode) unmarshal(s *cryptobyte.String, r *byteReaders) bool {
	*p = ParentNode{}
	var body cryptobyte.String
	if !r.bytes(s, &p.EncryptionKey) ||
		!r.bytes(s, &p.ParentHash) ||
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

// Unmarshal reads an HPKECiphertext from s. It rejects an empty
// kem_output or ciphertext, which no HPKE encryption produces (every KEM
// has an encapsulation and every AEAD a tag), so that a vector of them
// costs memory in proportion to its bytes.
func (c *HPKECiphertext) Unmarshal(s *cryptobyte.String) bool {
	return wire.ReadVarintBytes(s, &c.KEMOutput) && wire.ReadVarintBytes(s, &c.Ciphertext) &&
		len(c.KEMOutput) > 0 && len(c.Ciphertext) > 0
}

// readSharedCiphertext is Unmarshal without copying: the fields point into
// s, which must be a private copy.
func readSharedCiphertext(s *cryptobyte.String, c *HPKECiphertext) bool {
	return wire.ReadVarintSlice(s, &c.KEMOutput) && wire.ReadVarintSlice(s, &c.Ciphertext) &&
		len(c.KEMOutput) > 0 && len(c.Ciphertext) > 0
}

func skipHPKECiphertext(s *cryptobyte.String) bool {
	var c HPKECiphertext
	return readSharedCiphertext(s, &c)
}

// readHPKECiphertexts reads an `HPKECiphertext ciphertexts<V>` vector
// from s: one copy of the vector's bytes, which the ciphertexts point
// into, and a slice of exactly as many ciphertexts as it holds.
func readHPKECiphertexts(s *cryptobyte.String, out *[]HPKECiphertext) bool {
	return wire.ReadSharedList(s, out, skipHPKECiphertext, readSharedCiphertext)
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

// maxPathNodes bounds the nodes of an UpdatePath: a filtered direct path
// has at most one node per level of the tree, and a tree indexed by uint32
// has fewer than 32 levels above its leaves.
const maxPathNodes = 32

func skipUpdatePathNode(s *cryptobyte.String) bool { return wire.SkipVarintBytesN(s, 2) }

// Unmarshal reads an UpdatePath from s. It rejects more than 32 path nodes,
// which no tree can have (see maxPathNodes).
func (p *UpdatePath) Unmarshal(s *cryptobyte.String) bool {
	*p = UpdatePath{}
	if !p.LeafNode.Unmarshal(s) {
		return false
	}
	if n, ok := wire.CountVector(*s, skipUpdatePathNode); !ok || n > maxPathNodes {
		return false
	}
	return wire.ReadList(s, &p.Nodes, skipUpdatePathNode, func(s *cryptobyte.String, n *UpdatePathNode) bool {
		return wire.ReadVarintBytes(s, &n.EncryptionKey) && readHPKECiphertexts(s, &n.EncryptedPathSecret)
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
