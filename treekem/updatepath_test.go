package treekem_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

// pathFixture is a group of four whose members 0..3 all know their keys,
// and a fresh UpdatePath from leaf 0.
func pathFixture(t *testing.T) (*group, *treekem.Tree, *treekem.UpdatePath, []byte) {
	t.Helper()
	g := newGroup(t, hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 4)
	g.commit(t, 2, nil, nil, nil)
	committer := g.tree.Clone()
	p, err := committer.GenerateUpdatePath(0, nil, g.members[0].signer, testGroupID, nil)
	require.NoError(t, err)
	gc := []byte("group context")
	up, err := p.Encrypt(gc)
	require.NoError(t, err)
	return g, committer, up, gc
}

func clonePath(up *treekem.UpdatePath) *treekem.UpdatePath {
	c, err := treekem.ParseUpdatePath(up.Bytes())
	if err != nil {
		panic(err)
	}
	return c
}

func TestMergeUpdatePathRejects(t *testing.T) {
	g, _, up, _ := pathFixture(t)
	other := newMember(t, g.cs, "other")
	cases := []struct {
		name   string
		sender treekem.LeafIndex
		change func(*treekem.UpdatePath)
		want   error
	}{
		{"missing node", 0, func(p *treekem.UpdatePath) { p.Nodes = p.Nodes[:len(p.Nodes)-1] }, treekem.ErrInvalidUpdatePath},
		{"missing ciphertext", 0, func(p *treekem.UpdatePath) { p.Nodes[0].EncryptedPathSecret = nil }, treekem.ErrInvalidUpdatePath},
		{"swapped node key", 0, func(p *treekem.UpdatePath) { p.Nodes[0].EncryptionKey = other.encKey.PublicKey() }, treekem.ErrParentHashMismatch},
		{"reused node key", 0, func(p *treekem.UpdatePath) { p.Nodes[1].EncryptionKey = g.tree.Leaf(3).EncryptionKey }, treekem.ErrDuplicateKey},
		{"leaf parent hash", 0, func(p *treekem.UpdatePath) { p.LeafNode.ParentHash = flip(p.LeafNode.ParentHash, 3) }, treekem.ErrInvalidSignature},
		{"wrong sender", 1, func(*treekem.UpdatePath) {}, treekem.ErrInvalidSignature},
		{"sender out of range", 9, func(*treekem.UpdatePath) {}, treekem.ErrBlankLeaf},
		{"key_package source", 0, func(p *treekem.UpdatePath) { p.LeafNode.Source = treekem.SourceKeyPackage }, treekem.ErrInvalidLeafNode},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := clonePath(up)
			c.change(p)
			tree := g.tree.Clone()
			before := tree.Bytes()
			err := tree.MergeUpdatePath(c.sender, p, nil, g.opts())
			require.ErrorIs(t, err, c.want, "MergeUpdatePath =")
			if !bytes.Equal(tree.Bytes(), before) {
				t.Error("a rejected path changed the tree")
			}
		})
	}
}

func TestDecryptUpdatePathRejects(t *testing.T) {
	g, _, up, gc := pathFixture(t)
	tree := g.tree.Clone()
	require.NoError(t, tree.MergeUpdatePath(0, up, nil, g.opts()))
	priv := g.members[3].private
	if _, _, err := tree.DecryptUpdatePath(priv, 0, up, gc, nil); err != nil {
		t.Fatal(err)
	}
	stranger := treekem.NewPrivateKeys(g.cs, 3, newMember(t, g.cs, "x").encKey)
	if _, _, err := tree.DecryptUpdatePath(stranger, 0, up, gc, nil); !errors.Is(err, treekem.ErrNoPrivateKey) {
		t.Errorf("without the right key: %v, want ErrNoPrivateKey", err)
	}
	if _, _, err := tree.DecryptUpdatePath(g.members[0].private, 0, up, gc, nil); !errors.Is(err, treekem.ErrInvalidUpdatePath) {
		t.Errorf("the sender decrypting: %v, want ErrInvalidUpdatePath", err)
	}
	if _, _, err := tree.DecryptUpdatePath(priv, 7, up, gc, nil); !errors.Is(err, treekem.ErrBlankLeaf) {
		t.Errorf("sender out of range: %v, want ErrBlankLeaf", err)
	}
	// Excluding leaf 1 as if it were new changes the expected recipients.
	if _, _, err := tree.DecryptUpdatePath(g.members[1].private, 0, up, gc, []treekem.LeafIndex{1}); !errors.Is(err, treekem.ErrInvalidUpdatePath) {
		t.Errorf("with a different exclusion list: %v, want ErrInvalidUpdatePath", err)
	}
	// A path secret that does not match the public keys.
	forged := clonePath(up)
	for i := range forged.Nodes[1].EncryptedPathSecret {
		kem, ct, err := g.cs.EncryptWithLabel(tree.EncryptionKey(treekem.NodeIndex(5)), "UpdatePathNode", gc, []byte("not the path secret"))
		require.NoError(t, err)
		forged.Nodes[1].EncryptedPathSecret[i] = treekem.HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
	}
	if _, _, err := tree.DecryptUpdatePath(priv, 0, forged, gc, nil); !errors.Is(err, treekem.ErrPublicKeyMismatch) {
		t.Errorf("forged path secret: %v, want ErrPublicKeyMismatch", err)
	}
}

func TestExternalCommit(t *testing.T) {
	g := newGroup(t, hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 2)
	g.commit(t, 1, nil, nil, nil)
	joiner := newMember(t, g.cs, "external")
	sender := g.tree.LeftmostBlankLeaf()
	if sender != 2 {
		t.Fatalf("leftmost blank leaf = %d", sender)
	}
	committer := g.tree.Clone()
	p, err := committer.GenerateUpdatePath(sender, joiner.leaf, joiner.signer, testGroupID, nil)
	require.NoError(t, err)
	if committer.LeafCount() != 4 || committer.Leaf(2) == nil {
		t.Fatalf("tree not extended for the external committer")
	}
	gc := committer.TreeHash()
	up, err := p.Encrypt(gc)
	require.NoError(t, err)
	require.NoError(t, committer.Validate(g.opts()))
	for l, m := range g.members {
		recv := g.tree.Clone()
		require.NoError(t, recv.MergeUpdatePath(sender, up, nil, g.opts()), "leaf %d", l)
		require.Equal(t, committer.TreeHash(), recv.TreeHash(), "leaf")
		_, secret, err := recv.DecryptUpdatePath(m.private, sender, up, gc, nil)
		if err != nil || !bytes.Equal(secret, p.CommitSecret()) {
			t.Fatalf("leaf %d: %v", l, err)
		}
	}
	// Only the leftmost blank leaf may be claimed past the end.
	if _, err := g.tree.Clone().GenerateUpdatePath(3, joiner.leaf, joiner.signer, testGroupID, nil); !errors.Is(err, treekem.ErrBlankLeaf) {
		t.Errorf("claiming leaf 3: %v, want ErrBlankLeaf", err)
	}
}

func TestPrivateKeys(t *testing.T) {
	g, _, _, _ := pathFixture(t)
	k := g.members[3].private
	if k.String() != "[redacted]" {
		t.Error("PrivateKeys prints its contents")
	}
	require.NoError(t, k.Verify(g.tree))
	for _, bad := range [][]byte{nil, {0, 1}, append(slices.Clone(k.Bytes()), 0), {0xff, 0xff, 0, 0, 0, 0, 0}} {
		if _, err := treekem.ParsePrivateKeys(bad); !errors.Is(err, treekem.ErrMalformed) {
			t.Errorf("ParsePrivateKeys(%x) = %v", bad, err)
		}
	}
	// Removing a member blanks its direct path; Prune drops the keys of
	// the blanked nodes.
	tree := g.tree.Clone()
	require.NoError(t, tree.RemoveLeaf(2))
	if k.Verify(tree) == nil {
		t.Fatal("keys of blanked nodes still verify")
	}
	if err := k.Prune(tree).Verify(tree); err != nil {
		t.Error(err)
	}
}
