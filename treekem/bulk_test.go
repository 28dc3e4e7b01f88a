package treekem

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
)

// bulkTestTree returns a tree big enough for fillHashes to hash in
// parallel: n leaves with random keys (no signatures: hashing and indexing
// do not check them), several sharing an identity, some blank, and the
// parents of a few update paths.
func bulkTestTree(t *testing.T, n int) *Tree {
	t.Helper()
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	tree := NewTree(cs)
	random := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	for i := range n {
		leaf := &LeafNode{
			EncryptionKey: random(32),
			SignatureKey:  random(32),
			Credential:    Credential{Type: CredentialBasic, Identity: fmt.Appendf(nil, "client %d", i%(n/3))},
			Capabilities:  Capabilities{Credentials: []CredentialType{CredentialBasic, CredentialType(1 + i%3)}},
			Source:        SourceKeyPackage,
			Signature:     random(64),
		}
		if _, err := tree.AddLeaf(leaf); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []LeafIndex{3, 70, LeafIndex(n / 2), LeafIndex(n - 1)} {
		signer, err := cs.GenerateSignatureKey()
		require.NoError(t, err)
		leaf := *tree.Leaf(l)
		leaf.SignatureKey = signer.PublicKey()
		if _, err := tree.GenerateUpdatePath(l, &leaf, signer, []byte("group"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []LeafIndex{5, LeafIndex(n/2 + 1)} {
		require.NoError(t, tree.RemoveLeaf(l))
	}
	return tree
}

// TestBulk checks that indexAll builds the same indexes as indexing node
// by node, and that the parallel tree hash equals the sequential one.
func TestBulk(t *testing.T) {
	tree := bulkTestTree(t, 1500)
	if tree.LeafCount() < 4<<parallelHashLevel {
		t.Fatalf("tree of %d leaves is too small to hash in parallel", tree.LeafCount())
	}
	data := tree.Bytes()

	bulk, err := ParseTree(tree.suite, data)
	require.NoError(t, err)
	seq, err := ParseTree(tree.suite, data)
	require.NoError(t, err)
	seq.idx = NewTree(tree.suite).idx
	for i := range seq.nodes.width {
		seq.indexNode(NodeIndex(i))
	}
	if bulk.idx.lastPlus1 != seq.idx.lastPlus1 || bulk.idx.lastPlus1 != uint32(LeafIndex(1499).Node())+1 {
		t.Errorf("last non-blank node: bulk %d, node by node %d", int(bulk.idx.lastPlus1)-1, int(seq.idx.lastPlus1)-1)
	}
	if bulk.idx.members != seq.idx.members || bulk.idx.members != tree.MemberCount() {
		t.Errorf("members: bulk %d, node by node %d, tree %d", bulk.idx.members, seq.idx.members, tree.MemberCount())
	}
	if fmt.Sprint(bulk.idx.credUsed, bulk.idx.credSupported.nonZero()) != fmt.Sprint(seq.idx.credUsed, seq.idx.credSupported.nonZero()) {
		t.Errorf("credential counts: bulk %v %v, node by node %v %v", bulk.idx.credUsed, bulk.idx.credSupported.nonZero(), seq.idx.credUsed, seq.idx.credSupported.nonZero())
	}
	for i := range seq.nodes.width {
		nd := seq.nodes.at(NodeIndex(i))
		if k := nd.encryptionKey(); k != nil {
			a, okA := bulk.FindEncryptionKey(k)
			b, okB := seq.FindEncryptionKey(k)
			if a != b || !okA || !okB {
				t.Errorf("encryption key of node %d: bulk %d %v, node by node %d %v", i, a, okA, b, okB)
			}
		}
		if nd.leaf == nil {
			continue
		}
		a, okA := bulk.FindSignatureKey(nd.leaf.SignatureKey)
		b, okB := seq.FindSignatureKey(nd.leaf.SignatureKey)
		if a != b || !okA || !okB {
			t.Errorf("signature key of node %d: bulk %d %v, node by node %d %v", i, a, okA, b, okB)
		}
		if a, b := bulk.FindIdentity(&nd.leaf.Credential), seq.FindIdentity(&nd.leaf.Credential); fmt.Sprint(a) != fmt.Sprint(b) || !slices.Contains(a, NodeIndex(i).Leaf()) {
			t.Errorf("identity of node %d: bulk %v, node by node %v", i, a, b)
		}
	}
	// The bulk index keeps working as node-by-node changes follow.
	require.NoError(t, bulk.RemoveLeaf(0))
	if got := bulk.FindIdentity(&tree.Leaf(0).Credential); len(got) != 2 {
		t.Errorf("identity after removal: %v", got)
	}

	// Parallel hash (TreeHash on a fresh tree) against sequential hash.
	want := seq.nodeHash(NodeIndex(treemath.Root(seq.LeafCount())))
	parsed, err := ParseTree(tree.suite, data)
	require.NoError(t, err)
	if got := parsed.TreeHash(); !bytes.Equal(got, want) {
		t.Fatalf("parallel tree hash %x, sequential %x", got, want)
	}
	require.Equal(t, want, tree.TreeHash(), "tree hash of the original tree differs")
	for i := range parsed.nodes.width {
		if !bytes.Equal(parsed.nodes.at(NodeIndex(i)).hash, seq.nodes.at(NodeIndex(i)).hash) {
			t.Fatalf("hash of node %d differs", i)
		}
	}
	// A clone shares the hashed chunks; hashing its changes must not
	// touch the original's.
	c := parsed.Clone()
	require.NoError(t, c.RemoveLeaf(100))
	if bytes.Equal(c.TreeHash(), want) || !bytes.Equal(parsed.TreeHash(), want) {
		t.Fatal("clone and original tree hashes are mixed up")
	}
}

// naiveResolution is the resolution of RFC 9420, Section 4.1.1, computed
// without any shortcut.
func naiveResolution(t *Tree, n NodeIndex) []NodeIndex {
	nd := t.nodes.at(n)
	switch {
	case n.IsLeaf() && nd.leaf != nil:
		return []NodeIndex{n}
	case n.IsLeaf():
		return nil
	case nd.parent != nil:
		out := []NodeIndex{n}
		for _, u := range nd.parent.UnmergedLeaves {
			out = append(out, u.Node())
		}
		return out
	}
	l := naiveResolution(t, NodeIndex(treemath.Left(n.tm())))
	return append(l, naiveResolution(t, NodeIndex(treemath.Right(n.tm(), t.LeafCount())))...)
}

// TestBlankSubtree checks the highest non-blank node the index keeps, on
// which resolutions rely, through additions, removals, paths and clones.
func TestBlankSubtree(t *testing.T) {
	tree := bulkTestTree(t, 300)
	check := func(tree *Tree, step string) {
		t.Helper()
		want := uint32(0)
		for i := range tree.nodes.width {
			if !tree.nodes.at(NodeIndex(i)).blank() {
				want = i + 1
			}
		}
		if tree.idx.lastPlus1 != want {
			t.Fatalf("%s: highest non-blank node %d, want %d", step, int(tree.idx.lastPlus1)-1, int(want)-1)
		}
		for i := range tree.nodes.width {
			if got, want := tree.Resolution(NodeIndex(i)), naiveResolution(tree, NodeIndex(i)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: resolution of node %d is %v, want %v", step, i, got, want)
			}
		}
	}
	check(tree, "built")
	c := tree.Clone()
	for _, l := range []LeafIndex{299, 298, 297, 150, 296} {
		require.NoError(t, c.RemoveLeaf(l))
		check(c, fmt.Sprintf("removed %d", l))
	}
	check(tree, "original after changing the clone")
	leaf := *c.Leaf(0)
	leaf.EncryptionKey, leaf.SignatureKey = bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if _, err := c.AddLeaf(&leaf); err != nil {
		t.Fatal(err)
	}
	check(c, "added")
	cs := tree.suite
	signer, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	for _, l := range []LeafIndex{295, 0} {
		tmpl := *c.Leaf(l)
		tmpl.SignatureKey = signer.PublicKey()
		if _, err := c.GenerateUpdatePath(l, &tmpl, signer, []byte("group"), nil); err != nil {
			t.Fatal(err)
		}
		check(c, fmt.Sprintf("path from %d", l))
		signer, _ = cs.GenerateSignatureKey()
	}
	for l := range LeafIndex(296) {
		if c.Leaf(l) != nil && l != 295 {
			require.NoError(t, c.RemoveLeaf(l))
		}
	}
	check(c, "all removed but one")
	parsed, err := ParseTree(cs, c.Bytes())
	require.NoError(t, err)
	check(parsed, "parsed")
}
