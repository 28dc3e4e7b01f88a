package treekem

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"testing"

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
		if err != nil {
			t.Fatal(err)
		}
		leaf := *tree.Leaf(l)
		leaf.SignatureKey = signer.PublicKey()
		if _, err := tree.GenerateUpdatePath(l, &leaf, signer, []byte("group"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []LeafIndex{5, LeafIndex(n/2 + 1)} {
		if err := tree.RemoveLeaf(l); err != nil {
			t.Fatal(err)
		}
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
	if err != nil {
		t.Fatal(err)
	}
	seq, err := ParseTree(tree.suite, data)
	if err != nil {
		t.Fatal(err)
	}
	seq.idx = NewTree(tree.suite).idx
	for i := range seq.nodes.width {
		seq.indexNode(NodeIndex(i))
	}
	if bulk.idx.members != seq.idx.members || bulk.idx.members != tree.MemberCount() {
		t.Errorf("members: bulk %d, node by node %d, tree %d", bulk.idx.members, seq.idx.members, tree.MemberCount())
	}
	if fmt.Sprint(bulk.idx.credUsed, bulk.idx.credSupported) != fmt.Sprint(seq.idx.credUsed, seq.idx.credSupported) {
		t.Errorf("credential counts: bulk %v %v, node by node %v %v", bulk.idx.credUsed, bulk.idx.credSupported, seq.idx.credUsed, seq.idx.credSupported)
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
	if err := bulk.RemoveLeaf(0); err != nil {
		t.Fatal(err)
	}
	if got := bulk.FindIdentity(&tree.Leaf(0).Credential); len(got) != 2 {
		t.Errorf("identity after removal: %v", got)
	}

	// Parallel hash (TreeHash on a fresh tree) against sequential hash.
	want := seq.nodeHash(NodeIndex(treemath.Root(seq.LeafCount())))
	parsed, err := ParseTree(tree.suite, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.TreeHash(); !bytes.Equal(got, want) {
		t.Fatalf("parallel tree hash %x, sequential %x", got, want)
	}
	if !bytes.Equal(tree.TreeHash(), want) {
		t.Fatalf("tree hash of the original tree differs")
	}
	for i := range parsed.nodes.width {
		if !bytes.Equal(parsed.nodes.at(NodeIndex(i)).hash, seq.nodes.at(NodeIndex(i)).hash) {
			t.Fatalf("hash of node %d differs", i)
		}
	}
	// A clone shares the hashed chunks; hashing its changes must not
	// touch the original's.
	c := parsed.Clone()
	if err := c.RemoveLeaf(100); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c.TreeHash(), want) || !bytes.Equal(parsed.TreeHash(), want) {
		t.Fatal("clone and original tree hashes are mixed up")
	}
}
