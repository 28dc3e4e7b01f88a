package treekem_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// Refusals of UpdatePaths and path secrets that do not fit the tree (RFC
// 9420, §7.5, §7.6, §12.4.3.1). Each path is a real one changed in one
// place; the tree must be unchanged after a refusal.

func TestRefuseMergeUpdatePath(t *testing.T) {
	g, _, up, _ := pathFixture(t)
	cases := []struct {
		name   string
		change func(*treekem.UpdatePath)
		want   []error
	}{
		{"node-key-equals-leaf-key", func(p *treekem.UpdatePath) { p.Nodes[0].EncryptionKey = bytes.Clone(p.LeafNode.EncryptionKey) }, []error{treekem.ErrDuplicateKey}},
		{"two-nodes-same-key", func(p *treekem.UpdatePath) { p.Nodes[1].EncryptionKey = bytes.Clone(p.Nodes[0].EncryptionKey) }, []error{treekem.ErrDuplicateKey}},
		{"invalid-node-key", func(p *treekem.UpdatePath) { p.Nodes[1].EncryptionKey = []byte{1, 2, 3} }, []error{treekem.ErrInvalidUpdatePath, hpke.ErrInvalidPublicKey}},
		{"extra-node", func(p *treekem.UpdatePath) {
			extra := p.Nodes[0]
			extra.EncryptionKey = newMember(t, g.cs, "extra").encKey.PublicKey()
			p.Nodes = append(p.Nodes, extra)
		}, []error{treekem.ErrInvalidUpdatePath}},
		{"extra-ciphertext", func(p *treekem.UpdatePath) {
			p.Nodes[1].EncryptedPathSecret = append(p.Nodes[1].EncryptedPathSecret, p.Nodes[1].EncryptedPathSecret[0])
		}, []error{treekem.ErrInvalidUpdatePath}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := clonePath(up)
			c.change(p)
			tree := g.tree.Clone()
			before := tree.Bytes()
			err := tree.MergeUpdatePath(0, p, nil, g.opts())
			require.Error(t, err)
			for _, w := range c.want {
				require.ErrorIs(t, err, w)
			}
			require.Equal(t, before, tree.Bytes(), "a refused path changed the tree")
		})
	}
}

func TestRefuseDecryptUpdatePath(t *testing.T) {
	g, _, up, gc := pathFixture(t)
	tree := g.tree.Clone()
	require.NoError(t, tree.MergeUpdatePath(0, up, nil, g.opts()))
	priv := g.members[3].private
	_, _, err := tree.DecryptUpdatePath(priv, 0, up, gc, nil)
	require.NoError(t, err, "the genuine path")

	t.Run("member-out-of-range", func(t *testing.T) {
		stranger := treekem.NewPrivateKeys(g.cs, 9, newMember(t, g.cs, "x").encKey)
		_, _, err := tree.DecryptUpdatePath(stranger, 0, up, gc, nil)
		require.ErrorIs(t, err, treekem.ErrBlankLeaf)
	})
	t.Run("node-count", func(t *testing.T) {
		p := clonePath(up)
		p.Nodes = p.Nodes[:len(p.Nodes)-1]
		_, _, err := tree.DecryptUpdatePath(priv, 0, p, gc, nil)
		require.ErrorIs(t, err, treekem.ErrInvalidUpdatePath)
	})
	t.Run("ciphertext-count", func(t *testing.T) {
		p := clonePath(up)
		for i := range p.Nodes {
			p.Nodes[i].EncryptedPathSecret = append(p.Nodes[i].EncryptedPathSecret, p.Nodes[i].EncryptedPathSecret[0])
		}
		_, _, err := tree.DecryptUpdatePath(priv, 0, p, gc, nil)
		require.ErrorIs(t, err, treekem.ErrInvalidUpdatePath)
	})
	t.Run("ciphertext", func(t *testing.T) {
		p := clonePath(up)
		for i := range p.Nodes {
			for j := range p.Nodes[i].EncryptedPathSecret {
				p.Nodes[i].EncryptedPathSecret[j].Ciphertext = flip(p.Nodes[i].EncryptedPathSecret[j].Ciphertext, j)
			}
		}
		_, _, err := tree.DecryptUpdatePath(priv, 0, p, gc, nil)
		require.ErrorIs(t, err, treekem.ErrDecryption)
	})
}

func TestRefuseBlankMemberPath(t *testing.T) {
	// Three members: leaf 3 is blank, and the copath node above it has an
	// empty resolution, so it is not on leaf 2's filtered direct path.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 3)
	committer := g.tree.Clone()
	p, err := committer.GenerateUpdatePath(2, nil, g.members[2].signer, testGroupID, nil)
	require.NoError(t, err)
	gc := []byte("group context")
	up, err := p.Encrypt(gc)
	require.NoError(t, err)
	tree := g.tree.Clone()
	require.NoError(t, tree.MergeUpdatePath(2, up, nil, g.opts()))
	blank := treekem.NewPrivateKeys(cs, 3, newMember(t, cs, "x").encKey)

	_, _, err = tree.DecryptUpdatePath(blank, 2, up, gc, nil)
	require.ErrorIs(t, err, treekem.ErrInvalidUpdatePath)

	ps := bytes.Repeat([]byte{1}, cs.HashSize())
	_, _, err = tree.ImportPathSecret(blank, 2, ps)
	require.ErrorIs(t, err, treekem.ErrInvalidUpdatePath, "member below no node of the path")
	_, _, err = tree.ImportPathSecret(g.members[2].private, 2, ps)
	require.ErrorIs(t, err, treekem.ErrInvalidUpdatePath, "the sender itself")
	_, _, err = tree.ImportPathSecret(g.members[0].private, 9, ps)
	require.ErrorIs(t, err, treekem.ErrBlankLeaf, "sender out of range")
	_, _, err = tree.ImportPathSecret(treekem.NewPrivateKeys(cs, 9, newMember(t, cs, "y").encKey), 2, ps)
	require.ErrorIs(t, err, treekem.ErrBlankLeaf, "member out of range")
	_, _, err = tree.ImportPathSecret(g.members[0].private, 2, ps)
	require.ErrorIs(t, err, treekem.ErrPublicKeyMismatch, "a path secret that does not give the tree's keys")
}

// reparsed returns a fresh copy of g's tree, to change in place.
func reparsed(t *testing.T, g *group) *treekem.Tree {
	t.Helper()
	tree, err := treekem.ParseTree(g.cs, g.tree.Bytes())
	require.NoError(t, err)
	return tree
}

func TestRefuseTreeStructure(t *testing.T) {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	// Eight leaves: a commit from leaf 0 of five members fills nodes 1, 3
	// and 7, then three members are added at leaves 5 to 7, unmerged at
	// the root.
	g := newGroup(t, cs, 5)
	g.commitLocal(t, 0)
	for _, n := range []string{"f", "g", "h"} {
		g.add(t, newMember(t, cs, n))
	}
	require.Equal(t, []treekem.LeafIndex{5, 6, 7}, g.tree.ParentNode(7).UnmergedLeaves)
	require.NoError(t, reparsed(t, g).Validate(g.opts()), "the genuine tree")

	// Seven members and a commit from leaf 6 fill nodes 13, 11 and 7; the
	// eighth member is unmerged at all three.
	g8 := newGroup(t, cs, 7)
	g8.commitLocal(t, 6)
	g8.add(t, newMember(t, cs, "h"))
	require.NoError(t, reparsed(t, g8).Validate(g8.opts()), "the genuine tree of eight")

	cases := []struct {
		name string
		g    *group
		edit func(tree *treekem.Tree)
		want []error
	}{
		{"unmerged-unsorted", g, func(tree *treekem.Tree) { tree.ParentNode(7).UnmergedLeaves = []treekem.LeafIndex{6, 5, 7} }, nil},
		{"unmerged-out-of-range", g, func(tree *treekem.Tree) { tree.ParentNode(7).UnmergedLeaves = []treekem.LeafIndex{5, 6, 99} }, nil},
		{"unmerged-not-below", g, func(tree *treekem.Tree) { tree.ParentNode(3).UnmergedLeaves = []treekem.LeafIndex{5} }, nil},
		{"unmerged-missing-below", g8, func(tree *treekem.Tree) { tree.ParentNode(11).UnmergedLeaves = nil }, nil},
		{"duplicate-encryption-key", g, func(tree *treekem.Tree) {
			tree.Leaf(1).EncryptionKey = bytes.Clone(tree.Leaf(0).EncryptionKey)
		}, []error{treekem.ErrDuplicateKey}},
		{"duplicate-signature-key", g, func(tree *treekem.Tree) {
			tree.Leaf(1).SignatureKey = bytes.Clone(tree.Leaf(0).SignatureKey)
		}, []error{treekem.ErrDuplicateKey}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tree := reparsed(t, c.g)
			c.edit(tree)
			err := tree.Validate(c.g.opts())
			require.ErrorIs(t, err, treekem.ErrInvalidTree)
			for _, w := range c.want {
				require.ErrorIs(t, err, w)
			}
		})
	}
	t.Run("credential-type-unsupported", func(t *testing.T) {
		// A member that supports only its own credential type, while the
		// others use basic credentials (§7.3).
		g2 := newGroup(t, cs, 2)
		m := newMember(t, cs, "x")
		m.leaf = resigned(t, cs, m, func(l *treekem.LeafNode) {
			l.Credential = treekem.Credential{Type: 0x0a0a, Data: []byte("x")}
			l.Capabilities.Credentials = []treekem.CredentialType{0x0a0a}
		})
		g2.add(t, m)
		err := reparsed(t, g2).Validate(g2.opts())
		require.ErrorIs(t, err, treekem.ErrInvalidTree)
		require.ErrorIs(t, err, treekem.ErrCapabilities)
	})
	t.Run("unmerged-blank", func(t *testing.T) {
		g3 := newGroup(t, cs, 3)
		g3.commitLocal(t, 0)
		tree := reparsed(t, g3)
		tree.ParentNode(3).UnmergedLeaves = []treekem.LeafIndex{3}
		require.ErrorIs(t, tree.Validate(g3.opts()), treekem.ErrInvalidTree)
	})
}

func TestRefuseLazyLeafRead(t *testing.T) {
	// LeafSignatureKey reads the GroupInfo signer's key out of an encoded
	// tree before the signature is checked; a node before that leaf that
	// does not decode makes the tree malformed.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 3)
	data := g.tree.Bytes()
	key, err := treekem.LeafSignatureKey(data, 1)
	require.NoError(t, err)
	require.Equal(t, g.tree.Leaf(1).SignatureKey, key)
	_, k, err := wire.DecodeVarint(data)
	require.NoError(t, err)
	for _, typ := range []byte{0, 3, 0xff} {
		bad := bytes.Clone(data)
		bad[k+1] = typ // node 0: present, with an unknown node type
		_, err = treekem.LeafSignatureKey(bad, 1)
		require.ErrorIs(t, err, treekem.ErrMalformed, "node type %d", typ)
	}
}

func TestRefuseCredentialCoverage(t *testing.T) {
	// §7.3: a new leaf must support every credential type in use. Here a
	// member uses credential type 0x0a0a (which every member lists), and
	// the new leaf lists only its own basic type.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 2)
	x := newMember(t, cs, "x")
	x.leaf = resigned(t, cs, x, func(l *treekem.LeafNode) {
		l.Credential = treekem.Credential{Type: 0x0a0a, Data: []byte("x")}
	})
	g.add(t, x)
	m := newMember(t, cs, "new")
	require.NoError(t, g.tree.ValidateLeafNode(m.leaf, treekem.SourceKeyPackage, 0, g.opts()), "a leaf listing both types")
	narrow := resigned(t, cs, m, func(l *treekem.LeafNode) {
		l.Capabilities.Credentials = []treekem.CredentialType{treekem.CredentialBasic}
	})
	refuseLeafAny(t, g, narrow, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, treekem.ErrCapabilities)
}

func TestRefuseExternalSenderPosition(t *testing.T) {
	// §12.4.3.2: an external joiner takes the leftmost blank leaf, so a
	// path "from" the leaf past the end while leaf 3 is blank is refused.
	g, _, up, _ := pathFixture(t)
	tree := g.tree.Clone()
	require.NoError(t, tree.RemoveLeaf(3))
	before := tree.Bytes()
	err := tree.MergeUpdatePath(treekem.LeafIndex(tree.LeafCount()), clonePath(up), nil, g.opts())
	require.ErrorIs(t, err, treekem.ErrBlankLeaf)
	require.Equal(t, before, tree.Bytes())
}

func TestRefuseUndecodableSignatureKey(t *testing.T) {
	// A signature key that does not decode is malformed input, not a
	// failed signature.
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	m := newMember(t, cs, "x")
	l := *m.leaf
	l.SignatureKey = l.SignatureKey[:len(l.SignatureKey)-1]
	err := l.VerifySignature(cs, nil, 0)
	require.ErrorIs(t, err, treekem.ErrMalformed)
	require.NotErrorIs(t, err, treekem.ErrInvalidSignature)
}

func TestRefuseUpdatePathTrailingData(t *testing.T) {
	_, _, up, _ := pathFixture(t)
	_, err := treekem.ParseUpdatePath(append(up.Bytes(), 0))
	require.ErrorIs(t, err, treekem.ErrMalformed)
}
