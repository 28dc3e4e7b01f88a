package treekem_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// Refusals of leaf nodes that break RFC 9420, §7.3, each signed again by
// its owner after the change so that the check under test fires, and of
// trees and paths that break §7.1, §7.5 and §12.4.3.3. The tree must be
// unchanged after every refusal.

// resigned returns a copy of m's leaf after edit, signed by m for source
// key_package.
func resigned(t *testing.T, cs hpke.CipherSuite, m *member, edit func(*treekem.LeafNode)) *treekem.LeafNode {
	t.Helper()
	l := *m.leaf
	l.Capabilities.Credentials = slices.Clone(l.Capabilities.Credentials)
	l.Extensions = slices.Clone(l.Extensions)
	edit(&l)
	require.NoError(t, l.Sign(cs, m.signer, nil, 0))
	return &l
}

// refuseLeaf requires ValidateLeafNode of leaf to fail with every error of
// want and ErrInvalidLeafNode (or ErrBlankLeaf), leaving the tree as it
// was.
func refuseLeafAny(t *testing.T, g *group, leaf *treekem.LeafNode, source treekem.LeafNodeSource, at treekem.LeafIndex, opts *treekem.ValidateOptions, want ...error) {
	t.Helper()
	before := g.tree.Bytes()
	err := g.tree.ValidateLeafNode(leaf, source, at, opts)
	require.Error(t, err)
	for _, w := range want {
		require.ErrorIs(t, err, w)
	}
	require.True(t, bytes.Equal(before, g.tree.Bytes()), "a refused leaf changed the tree")
}

func TestRefuseLeafNode(t *testing.T) {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 3)
	m := newMember(t, cs, "new")
	require.NoError(t, g.tree.ValidateLeafNode(m.leaf, treekem.SourceKeyPackage, 0, g.opts()), "the genuine leaf")

	t.Run("signature", func(t *testing.T) {
		l := *m.leaf
		l.Signature = flip(l.Signature, 1)
		refuseLeafAny(t, g, &l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, treekem.ErrInvalidSignature)
	})
	t.Run("encryption-key", func(t *testing.T) {
		l := resigned(t, cs, m, func(l *treekem.LeafNode) { l.EncryptionKey = []byte{1, 2, 3} })
		refuseLeafAny(t, g, l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, hpke.ErrInvalidPublicKey)
	})
	t.Run("credential-not-listed", func(t *testing.T) {
		// §7.2: the leaf's own credential type must be in its
		// capabilities. Basic credentials are in use by every member, so
		// a new type is used that the others support.
		l := resigned(t, cs, m, func(l *treekem.LeafNode) {
			l.Credential = treekem.Credential{Type: 0x0a0a, Data: []byte("x")}
			l.Capabilities.Credentials = []treekem.CredentialType{treekem.CredentialBasic}
		})
		refuseLeafAny(t, g, l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, treekem.ErrCapabilities)
	})
	t.Run("extension-not-listed", func(t *testing.T) {
		l := resigned(t, cs, m, func(l *treekem.LeafNode) { l.Extensions = []treekem.Extension{{Type: 0xff01}} })
		refuseLeafAny(t, g, l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, treekem.ErrCapabilities)
	})
	t.Run("duplicate-extension", func(t *testing.T) {
		l := resigned(t, cs, m, func(l *treekem.LeafNode) {
			l.Extensions = []treekem.Extension{{Type: 0xff00, Data: []byte("a")}, {Type: 0xff00, Data: []byte("b")}}
		})
		refuseLeafAny(t, g, l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode)
	})
	t.Run("required-capabilities", func(t *testing.T) {
		opts := g.opts()
		opts.RequiredCapabilities = &treekem.RequiredCapabilities{Extensions: []treekem.ExtensionType{0xff02}}
		refuseLeafAny(t, g, m.leaf, treekem.SourceKeyPackage, 0, opts, treekem.ErrInvalidLeafNode, treekem.ErrCapabilities)
	})
	t.Run("lifetime-inverted", func(t *testing.T) {
		l := resigned(t, cs, m, func(l *treekem.LeafNode) {
			l.Lifetime.NotBefore, l.Lifetime.NotAfter = l.Lifetime.NotAfter, l.Lifetime.NotBefore
		})
		refuseLeafAny(t, g, l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, treekem.ErrLifetime)
	})
	t.Run("source", func(t *testing.T) {
		// A key_package leaf where a commit's leaf is expected.
		refuseLeafAny(t, g, m.leaf, treekem.SourceCommit, 1, g.opts(), treekem.ErrInvalidLeafNode)
	})
	t.Run("update-of-blank-leaf", func(t *testing.T) {
		l := *m.leaf
		l.Source = treekem.SourceUpdate
		l.Lifetime = treekem.Lifetime{}
		require.NoError(t, l.Sign(cs, m.signer, testGroupID, 3))
		refuseLeafAny(t, g, &l, treekem.SourceUpdate, 3, g.opts(), treekem.ErrBlankLeaf)
	})
	t.Run("credential-hook", func(t *testing.T) {
		opts := g.opts()
		opts.Credential = func(treekem.LeafIndex, *treekem.LeafNode) error { return treekem.ErrCredential }
		refuseLeafAny(t, g, m.leaf, treekem.SourceKeyPackage, 0, opts, treekem.ErrInvalidLeafNode, treekem.ErrCredential)
	})
	t.Run("duplicate-encryption-key", func(t *testing.T) {
		l := resigned(t, cs, m, func(l *treekem.LeafNode) { l.EncryptionKey = g.tree.Leaf(1).EncryptionKey })
		refuseLeafAny(t, g, l, treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrInvalidLeafNode, treekem.ErrDuplicateKey)
	})
}

func TestRefuseTree(t *testing.T) {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("trailing-blank", func(t *testing.T) {
		g := newGroup(t, cs, 3)
		data := g.tree.Bytes()
		// Append a blank parent and a blank leaf (each encoded as a
		// zero presence octet) inside the vector.
		n, k, err := wire.DecodeVarint(data)
		require.NoError(t, err)
		require.Equal(t, len(data), k+int(n))
		bad := wire.AppendVarint(nil, n+2)
		bad = append(append(bad, data[k:]...), 0, 0)
		_, err = treekem.ParseTree(cs, bad)
		require.ErrorIs(t, err, treekem.ErrInvalidTree)
	})
	t.Run("even-length", func(t *testing.T) {
		// §12.4.3.3: three members take five nodes; a sixth, non-blank
		// parent node makes the array even.
		g := newGroup(t, cs, 3)
		data := g.tree.Bytes()
		n, k, err := wire.DecodeVarint(data)
		require.NoError(t, err)
		parent := append([]byte{1, 2, 32}, bytes.Repeat([]byte{9}, 32)...)
		parent = append(parent, 0, 0) // empty parent_hash and unmerged_leaves
		bad := wire.AppendVarint(nil, n+uint32(len(parent)))
		bad = append(append(bad, data[k:]...), parent...)
		_, err = treekem.ParseTree(cs, bad)
		require.ErrorIs(t, err, treekem.ErrInvalidTree)
		require.ErrorIs(t, err, treekem.ErrMalformed)
	})
	t.Run("empty", func(t *testing.T) {
		_, err := treekem.ParseTree(cs, []byte{0})
		require.ErrorIs(t, err, treekem.ErrInvalidTree)
		require.ErrorIs(t, treekem.NewTree(cs).Validate(nil), treekem.ErrInvalidTree)
	})
	t.Run("unknown-suite", func(t *testing.T) {
		g := newGroup(t, cs, 2)
		_, err := treekem.ParseTree(0x7777, g.tree.Bytes())
		require.ErrorIs(t, err, hpke.ErrUnsupportedCipherSuite)
	})
	t.Run("leaf-node-parse", func(t *testing.T) {
		_, err := treekem.ParseLeafNode([]byte{1, 2, 3})
		require.ErrorIs(t, err, treekem.ErrMalformed)
	})
}
