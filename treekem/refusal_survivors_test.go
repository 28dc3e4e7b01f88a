package treekem_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// These tests build trees in which exactly one check of Tree.Validate
// fails: after an edit, the parent hashes of the chain down to the
// committer's leaf are recomputed and that leaf is re-signed, so the
// parent-hash check (RFC 9420, Section 7.9.2) and the leaf signatures pass.

// hashOf hashes the encoding written by f with the suite's hash.
func hashOf(t *testing.T, cs hpke.CipherSuite, f func(*cryptobyte.Builder)) []byte {
	t.Helper()
	var b cryptobyte.Builder
	f(&b)
	data, err := b.Bytes()
	require.NoError(t, err)
	return cs.Hash(data)
}

// parentHashOf computes a ParentHashInput hash (RFC 9420, Section 7.9).
func parentHashOf(t *testing.T, cs hpke.CipherSuite, key, parentHash, siblingHash []byte) []byte {
	return hashOf(t, cs, func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, key)
		wire.AddVarintBytes(b, parentHash)
		wire.AddVarintBytes(b, siblingHash)
	})
}

// blankLeafHash is the tree hash of blank leaf l (RFC 9420, Section 7.8).
func blankLeafHash(t *testing.T, cs hpke.CipherSuite, l treekem.LeafIndex) []byte {
	return hashOf(t, cs, func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(treekem.NodeTypeLeaf))
		b.AddUint32(uint32(l))
		wire.AddOptional(b, false, nil)
	})
}

// parentTreeHash is the tree hash of a parent node with the given
// children's tree hashes (RFC 9420, Section 7.8).
func parentTreeHash(t *testing.T, cs hpke.CipherSuite, p *treekem.ParentNode, left, right []byte) []byte {
	return hashOf(t, cs, func(b *cryptobyte.Builder) {
		b.AddUint8(uint8(treekem.NodeTypeParent))
		wire.AddOptional(b, true, func(b *cryptobyte.Builder) { p.Marshal(b) })
		wire.AddVarintBytes(b, left)
		wire.AddVarintBytes(b, right)
	})
}

// resignCommitLeaf sets the parent_hash of leaf l (source commit) and
// re-signs it with the member's key.
func resignCommitLeaf(t *testing.T, g *group, tree *treekem.Tree, l treekem.LeafIndex, parentHash []byte) {
	t.Helper()
	leaf := tree.Leaf(l)
	require.Equal(t, treekem.SourceCommit, leaf.Source)
	leaf.ParentHash = parentHash
	require.NoError(t, leaf.Sign(g.cs, g.members[l].signer, testGroupID, l))
}

// reparse re-reads an edited tree, so that no hash cached before the edit
// is used.
func reparse(t *testing.T, g *group, tree *treekem.Tree) *treekem.Tree {
	t.Helper()
	out, err := treekem.ParseTree(g.cs, tree.Bytes())
	require.NoError(t, err)
	return out
}

func TestRefuseParentHashesVerified(t *testing.T) {
	// §7.9.2: VerifyParentHashes refuses a parent node that no child's
	// chain links to.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 4)
	g.commitLocal(t, 0)
	require.NoError(t, reparsed(t, g).VerifyParentHashes(), "the genuine tree")
	for _, n := range []treekem.NodeIndex{1, 3} {
		tree := reparsed(t, g)
		p := tree.ParentNode(n)
		other := newMember(t, cs, "other")
		p.EncryptionKey = other.leaf.EncryptionKey // a valid key, not the one hashed
		err := reparse(t, g, tree).VerifyParentHashes()
		require.ErrorIs(t, err, treekem.ErrInvalidTree, "node %d", n)
		require.ErrorIs(t, err, treekem.ErrParentHashMismatch, "node %d", n)
	}
}

func TestRefuseUndecodableParentKey(t *testing.T) {
	// §7.3 / §12.4.3.1: a parent node's encryption key must be a valid
	// public key, even when the parent hashes agree with it.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 2)
	g.commitLocal(t, 0) // sets the root, node 1; leaf 0 carries its parent hash
	tree := reparsed(t, g)
	root := tree.ParentNode(1)
	root.EncryptionKey = root.EncryptionKey[:len(root.EncryptionKey)-1]
	resignCommitLeaf(t, g, tree, 0, parentHashOf(t, cs, root.EncryptionKey, root.ParentHash, tree.NodeTreeHash(2)))
	bad := reparse(t, g, tree)
	require.NoError(t, bad.VerifyParentHashes(), "the parent hashes agree with the bad key")
	err := bad.Validate(g.opts())
	require.ErrorIs(t, err, treekem.ErrInvalidTree)
	require.ErrorIs(t, err, hpke.ErrInvalidPublicKey)
	require.NotErrorIs(t, err, treekem.ErrParentHashMismatch)
}

func TestRefuseUnmergedLeavesRepeated(t *testing.T) {
	// §7.9.2 / §12.4.3.1: unmerged_leaves must be strictly increasing. A
	// repeated entry changes no parent hash (the original sibling tree
	// hash removes the leaf once), so only this check refuses it.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 5)
	g.commitLocal(t, 0) // sets nodes 1, 3 and 7
	for _, n := range []string{"f", "g", "h"} {
		g.add(t, newMember(t, cs, n))
	}
	require.Equal(t, []treekem.LeafIndex{5, 6, 7}, g.tree.ParentNode(7).UnmergedLeaves)
	tree := reparsed(t, g)
	tree.ParentNode(7).UnmergedLeaves = []treekem.LeafIndex{5, 5, 6, 7}
	bad := reparse(t, g, tree)
	require.NoError(t, bad.VerifyParentHashes(), "the parent hashes still agree")
	err := bad.Validate(g.opts())
	require.ErrorIs(t, err, treekem.ErrInvalidTree)
	require.NotErrorIs(t, err, treekem.ErrParentHashMismatch)
	require.ErrorContains(t, err, "not strictly increasing")
}

func TestRefuseUnmergedLeafNotListedBetween(t *testing.T) {
	// §7.9.2 / §12.4.3.1: a leaf unmerged at a parent is unmerged at every
	// non-blank parent between them. Four leaves: leaf 3 commits (nodes 5
	// and 3), then leaf 0 (nodes 1 and 3). The root then lists leaf 3 as
	// unmerged while node 5, between them, does not; the root's parent
	// hash, node 1's and leaf 0's are recomputed for that list.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 4)
	g.commitLocal(t, 3)
	g.commitLocal(t, 0)
	tree := reparsed(t, g)
	require.NoError(t, tree.Validate(g.opts()), "the genuine tree")
	root, n1, n5 := tree.ParentNode(3), tree.ParentNode(1), tree.ParentNode(5)
	require.NotNil(t, n5)
	require.Empty(t, n5.UnmergedLeaves)
	root.UnmergedLeaves = []treekem.LeafIndex{3}
	// The original sibling tree hash of the root: node 5 with leaf 3 blank.
	sibling := parentTreeHash(t, cs, n5, tree.NodeTreeHash(4), blankLeafHash(t, cs, 3))
	n1.ParentHash = parentHashOf(t, cs, root.EncryptionKey, root.ParentHash, sibling)
	resignCommitLeaf(t, g, tree, 0, parentHashOf(t, cs, n1.EncryptionKey, n1.ParentHash, tree.NodeTreeHash(2)))
	bad := reparse(t, g, tree)
	require.NoError(t, bad.VerifyParentHashes(), "the parent hashes agree with the lists")
	err := bad.Validate(g.opts())
	require.ErrorIs(t, err, treekem.ErrInvalidTree)
	require.NotErrorIs(t, err, treekem.ErrParentHashMismatch)
	require.ErrorContains(t, err, "is unmerged at node 3 but not at node 5")
}

func TestRefuseLazyLeafUnknownNodeType(t *testing.T) {
	// LeafSignatureKey: the node of the leaf asked for has an unknown node
	// type. That node does not decode, so the tree is malformed; it is
	// neither a blank leaf nor a key.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 3)
	data := g.tree.Bytes()
	_, k, err := wire.DecodeVarint(data)
	require.NoError(t, err)
	for _, typ := range []byte{0, 3, 0xff} {
		bad := bytes.Clone(data)
		bad[k+1] = typ // node 0: present, with an unknown node type
		key, err := treekem.LeafSignatureKey(bad, 0)
		require.ErrorIs(t, err, treekem.ErrMalformed, "node type %d", typ)
		require.NotErrorIs(t, err, treekem.ErrBlankLeaf, "node type %d", typ)
		require.Nil(t, key)
	}
	// A leaf node cut short at the leaf asked for.
	_, err = treekem.LeafSignatureKey(data[:k+10], 0)
	require.ErrorIs(t, err, treekem.ErrMalformed)
}

func TestRefuseLazyLeafAtEvenEnd(t *testing.T) {
	// LeafSignatureKey on a node list of even length (malformed, §12.4.3.3)
	// asked for the leaf just past its end: out of range, not blank.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 1)
	data := g.tree.Bytes()
	_, k, err := wire.DecodeVarint(data)
	require.NoError(t, err)
	nodes := append(bytes.Clone(data[k:]), 0) // leaf 0, then a blank node
	var b cryptobyte.Builder
	wire.AddVarintBytes(&b, nodes)
	even, err := b.Bytes()
	require.NoError(t, err)
	_, err = treekem.LeafSignatureKey(even, 1)
	require.ErrorIs(t, err, treekem.ErrLeafIndexRange)
	require.NotErrorIs(t, err, treekem.ErrBlankLeaf)
}

func TestRefuseTreeEditBadSource(t *testing.T) {
	// AddLeaf and UpdateLeaf check, as documented, that the leaf is
	// non-nil with a leaf_node_source of the three defined (§7.2), and
	// leave the tree unchanged otherwise.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 2)
	before := g.tree.Bytes()
	for _, src := range []treekem.LeafNodeSource{0, treekem.SourceCommit + 1, 0xff} {
		leaf := *newMember(t, cs, "x").leaf
		leaf.Source = src
		_, err := g.tree.AddLeaf(&leaf)
		require.ErrorIs(t, err, treekem.ErrInvalidLeafNode, "AddLeaf, source %d", src)
		err = g.tree.UpdateLeaf(1, &leaf)
		require.ErrorIs(t, err, treekem.ErrInvalidLeafNode, "UpdateLeaf, source %d", src)
		require.Equal(t, before, g.tree.Bytes(), "source %d", src)
	}
	_, err := g.tree.AddLeaf(nil)
	require.ErrorIs(t, err, treekem.ErrInvalidLeafNode)
}

func TestRefuseRemoveBlankLeaf(t *testing.T) {
	// RemoveLeaf of a blank leaf is refused and changes nothing; here the
	// blank leaf's direct path holds a non-blank node that a removal would
	// blank.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 4)
	require.NoError(t, g.tree.RemoveLeaf(1))
	g.commitLocal(t, 0) // sets node 3 (node 1's copath, leaf 1, is blank)
	require.False(t, g.tree.IsBlank(3))
	before := g.tree.Bytes()
	require.ErrorIs(t, g.tree.RemoveLeaf(1), treekem.ErrBlankLeaf)
	require.Equal(t, before, g.tree.Bytes())
}

// encodeNodes encodes a ratchet_tree node vector by hand; a nil entry is
// a blank node.
func encodeNodes(t *testing.T, nodes ...any) []byte {
	t.Helper()
	var b cryptobyte.Builder
	wire.AddVarintPrefixed(&b, func(b *cryptobyte.Builder) {
		for _, n := range nodes {
			switch n := n.(type) {
			case *treekem.LeafNode:
				b.AddUint8(1)
				b.AddUint8(uint8(treekem.NodeTypeLeaf))
				n.Marshal(b)
			case *treekem.ParentNode:
				b.AddUint8(1)
				b.AddUint8(uint8(treekem.NodeTypeParent))
				n.Marshal(b)
			default:
				b.AddUint8(0)
			}
		}
	})
	data, err := b.Bytes()
	require.NoError(t, err)
	return data
}

func TestRefuseTreeNodeTypePosition(t *testing.T) {
	// §4.1 / §7.8: leaves sit at even node indexes and parents at odd ones.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	a, b, c := newMember(t, cs, "a").leaf, newMember(t, cs, "b").leaf, newMember(t, cs, "c").leaf
	p := &treekem.ParentNode{EncryptionKey: newMember(t, cs, "p").leaf.EncryptionKey}
	_, err := treekem.ParseTree(cs, encodeNodes(t, a, p, c))
	require.NoError(t, err, "the well-placed tree")
	for name, data := range map[string][]byte{
		"leaf at an odd index":    encodeNodes(t, a, b, c),
		"parent at an even index": encodeNodes(t, p, nil, c),
	} {
		_, err := treekem.ParseTree(cs, data)
		require.ErrorIs(t, err, treekem.ErrInvalidTree, name)
		require.ErrorContains(t, err, "wrong type for its position", name)
	}
}

func TestRefuseTreeTrailingData(t *testing.T) {
	// A ratchet_tree followed by more bytes is malformed.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 2)
	_, err := treekem.ParseTree(cs, append(g.tree.Bytes(), 0))
	require.ErrorIs(t, err, treekem.ErrMalformed)
}
