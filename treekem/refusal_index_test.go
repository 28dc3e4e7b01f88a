package treekem_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

// TestLeafIndexNoWrap checks that a leaf index above MaxLeafIndex, as a
// peer may put in any uint32 field, never aliases a leaf of the tree: 2*l
// computed in uint32 would turn leaf 2^31+2 into leaf 2 (RFC 9420,
// Appendix C; §12.1.3 for Remove).
func TestLeafIndexNoWrap(t *testing.T) {
	assert.Equal(t, treekem.NodeIndex(10), treekem.LeafIndex(5).Node())
	assert.Equal(t, treekem.NodeIndex(1<<32-2), treekem.MaxLeafIndex.Node())
	for _, l := range []treekem.LeafIndex{treekem.MaxLeafIndex + 1, 1<<31 + 2, 1<<32 - 1} {
		assert.Equal(t, treekem.InvalidNode, l.Node(), "leaf %d", l)
		assert.False(t, l.Node().IsLeaf())
	}

	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	g := newGroup(t, cs, 3)
	before := g.tree.Bytes()
	wrapped := treekem.LeafIndex(1<<31 + 2) // 2*l mod 2^32 == 4 == node of leaf 2
	require.NotNil(t, g.tree.Leaf(2))
	assert.False(t, g.tree.HasLeaf(wrapped))
	assert.True(t, g.tree.HasLeaf(2))
	assert.Nil(t, g.tree.Leaf(wrapped), "an out-of-range leaf index must not alias leaf 2")

	err := g.tree.RemoveLeaf(wrapped)
	require.ErrorIs(t, err, treekem.ErrBlankLeaf)
	upd := newMember(t, cs, "intruder")
	err = g.tree.UpdateLeaf(wrapped, upd.leaf)
	require.ErrorIs(t, err, treekem.ErrBlankLeaf)
	_, err = g.tree.GenerateUpdatePath(wrapped, nil, g.members[2].signer, testGroupID, nil)
	require.ErrorIs(t, err, treekem.ErrBlankLeaf)
	_, _, err = g.tree.ImportPathSecret(g.members[0].private, wrapped, make([]byte, cs.HashSize()))
	require.Error(t, err)
	assert.Nil(t, g.tree.FilteredDirectPath(wrapped))
	assert.True(t, bytes.Equal(before, g.tree.Bytes()), "refused operations changed the tree")
}
