package treekem_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
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
