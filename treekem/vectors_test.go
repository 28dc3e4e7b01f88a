package treekem_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

type hexBytes = vectortest.HexBytes

type treeValidationVector struct {
	CipherSuite hpke.CipherSuite `json:"cipher_suite"`
	Tree        hexBytes         `json:"tree"`
	GroupID     hexBytes         `json:"group_id"`
	Resolutions [][]uint32       `json:"resolutions"`
	TreeHashes  []hexBytes       `json:"tree_hashes"`
}

type treeOperationsVector struct {
	CipherSuite    hpke.CipherSuite `json:"cipher_suite"`
	TreeBefore     hexBytes         `json:"tree_before"`
	Proposal       hexBytes         `json:"proposal"`
	ProposalSender uint32           `json:"proposal_sender"`
	TreeHashBefore hexBytes         `json:"tree_hash_before"`
	TreeAfter      hexBytes         `json:"tree_after"`
	TreeHashAfter  hexBytes         `json:"tree_hash_after"`
}

type treeKEMVector struct {
	CipherSuite             hpke.CipherSuite `json:"cipher_suite"`
	GroupID                 hexBytes         `json:"group_id"`
	Epoch                   uint64           `json:"epoch"`
	ConfirmedTranscriptHash hexBytes         `json:"confirmed_transcript_hash"`
	RatchetTree             hexBytes         `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          uint32   `json:"index"`
		EncryptionPriv hexBytes `json:"encryption_priv"`
		SignaturePriv  hexBytes `json:"signature_priv"`
		PathSecrets    []struct {
			Node       uint32   `json:"node"`
			PathSecret hexBytes `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        uint32     `json:"sender"`
		UpdatePath    hexBytes   `json:"update_path"`
		PathSecrets   []hexBytes `json:"path_secrets"`
		CommitSecret  hexBytes   `json:"commit_secret"`
		TreeHashAfter hexBytes   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

// vectorTime lies within the lifetime of every key_package leaf node of the
// official vectors, which were generated in 2023 with lifetimes of years.
var vectorTime = time.Date(2023, time.June, 1, 0, 0, 0, 0, time.UTC)

func vectorNow() time.Time { return vectorTime }

func TestVectors(t *testing.T) {
	vectortest.Run(t, "tree-validation", testTreeValidation)
	vectortest.Run(t, "tree-operations", testTreeOperations)
	vectortest.Run(t, "treekem", testTreeKEM)
}

// TestGeneratedVectors checks the vectors of ../testdata/vectors, which
// package testvectors generates, with the same checks.
func TestGeneratedVectors(t *testing.T) {
	vectortest.RunGenerated(t, "tree-validation", testTreeValidation)
	vectortest.RunGenerated(t, "tree-operations", testTreeOperations)
	vectortest.RunGenerated(t, "treekem", testTreeKEM)
}

func parseTree(t *testing.T, cs hpke.CipherSuite, data []byte) *treekem.Tree {
	t.Helper()
	tree, err := treekem.ParseTree(cs, data)
	if err != nil {
		t.Fatalf("ParseTree: %v", err)
	}
	if got := tree.Bytes(); !bytes.Equal(got, data) {
		t.Fatalf("tree does not re-encode to the same bytes")
	}
	return tree
}

func testTreeValidation(t *testing.T, v *treeValidationVector) {
	tree := parseTree(t, v.CipherSuite, v.Tree)
	if int(tree.Width()) != len(v.TreeHashes) || len(v.Resolutions) != len(v.TreeHashes) {
		t.Fatalf("tree has %d nodes, vector %d hashes and %d resolutions", tree.Width(), len(v.TreeHashes), len(v.Resolutions))
	}
	t.Run("resolutions", func(t *testing.T) {
		for n, want := range v.Resolutions {
			got := tree.Resolution(treekem.NodeIndex(n))
			if len(got) != len(want) || !slices.EqualFunc(got, want, func(a treekem.NodeIndex, b uint32) bool { return uint32(a) == b }) {
				t.Errorf("resolution of node %d = %v, want %v", n, got, want)
			}
		}
	})
	t.Run("tree-hashes", func(t *testing.T) {
		for n, want := range v.TreeHashes {
			if got := tree.NodeTreeHash(treekem.NodeIndex(n)); !bytes.Equal(got, want) {
				t.Errorf("tree hash of node %d = %x, want %x", n, got, want)
			}
		}
	})
	t.Run("parent-hashes", func(t *testing.T) {
		if err := tree.VerifyParentHashes(); err != nil {
			t.Error(err)
		}
	})
	t.Run("leaf-signatures", func(t *testing.T) {
		checked := 0
		for l, leaf := range tree.Leaves() {
			if err := leaf.VerifySignature(v.CipherSuite, v.GroupID, l); err != nil {
				t.Errorf("leaf %d: %v", l, err)
			}
			checked++
		}
		if checked == 0 {
			t.Error("no leaf checked")
		}
	})
	t.Run("validate", func(t *testing.T) {
		if err := tree.Validate(&treekem.ValidateOptions{GroupID: v.GroupID, Now: vectorNow}); err != nil {
			t.Error(err)
		}
		if err := tree.Validate(&treekem.ValidateOptions{GroupID: append(slices.Clone(v.GroupID), 0), Now: vectorNow}); !errors.Is(err, treekem.ErrInvalidSignature) && !hasOnlyKeyPackageLeaves(tree) {
			t.Errorf("Validate with the wrong group ID = %v, want ErrInvalidSignature", err)
		}
		if hasKeyPackageLeaf(tree) {
			late := func() time.Time { return vectorTime.AddDate(2, 0, 0) }
			if err := tree.Validate(&treekem.ValidateOptions{GroupID: v.GroupID, Now: late}); !errors.Is(err, treekem.ErrLifetime) {
				t.Errorf("Validate two years later = %v, want ErrLifetime", err)
			}
		}
	})
}

func hasKeyPackageLeaf(tree *treekem.Tree) bool {
	for _, leaf := range tree.Leaves() {
		if leaf.Source == treekem.SourceKeyPackage {
			return true
		}
	}
	return false
}

func hasOnlyKeyPackageLeaves(tree *treekem.Tree) bool {
	for _, leaf := range tree.Leaves() {
		if leaf.Source != treekem.SourceKeyPackage {
			return false
		}
	}
	return true
}

// proposal is the part of an MLS Proposal (RFC 9420, Section 12.1) the
// tree-operations vectors use.
type proposal struct {
	typ     uint16
	leaf    *treekem.LeafNode // Add (from the KeyPackage) or Update
	removed uint32
}

func parseProposal(data []byte) (*proposal, error) {
	p := new(proposal)
	err := wire.Parse(data, func(s *cryptobyte.String) bool {
		if !s.ReadUint16(&p.typ) {
			return false
		}
		switch p.typ {
		case 1: // Add{KeyPackage}
			var version, suite uint16
			var initKey, sig []byte
			var exts []treekem.Extension
			p.leaf = new(treekem.LeafNode)
			return s.ReadUint16(&version) && s.ReadUint16(&suite) &&
				wire.ReadVarintBytes(s, &initKey) && p.leaf.Unmarshal(s) &&
				treekem.UnmarshalExtensions(s, &exts) && wire.ReadVarintBytes(s, &sig)
		case 2: // Update{LeafNode}
			p.leaf = new(treekem.LeafNode)
			return p.leaf.Unmarshal(s)
		case 3: // Remove{removed}
			return s.ReadUint32(&p.removed)
		}
		return false
	})
	return p, err
}

func testTreeOperations(t *testing.T, v *treeOperationsVector) {
	tree := parseTree(t, v.CipherSuite, v.TreeBefore)
	if got := tree.TreeHash(); !bytes.Equal(got, v.TreeHashBefore) {
		t.Fatalf("tree hash before = %x, want %x", got, v.TreeHashBefore)
	}
	if err := tree.VerifyParentHashes(); err != nil {
		t.Fatalf("tree before: %v", err)
	}
	p, err := parseProposal(v.Proposal)
	if err != nil {
		t.Fatalf("proposal: %v", err)
	}
	before := tree.Clone()
	switch p.typ {
	case 1:
		l, err := tree.AddLeaf(p.leaf)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := tree.FindSignatureKey(p.leaf.SignatureKey); !ok || got != l {
			t.Errorf("added leaf %d not found by signature key", l)
		}
		if got, ok := tree.FindEncryptionKey(p.leaf.EncryptionKey); !ok || got != l.Node() {
			t.Errorf("added leaf %d not found by encryption key", l)
		}
		if _, err := tree.AddLeaf(p.leaf); !errors.Is(err, treekem.ErrDuplicateKey) {
			t.Errorf("adding the same leaf twice: %v, want ErrDuplicateKey", err)
		}
	case 2:
		if err := tree.UpdateLeaf(treekem.LeafIndex(v.ProposalSender), p.leaf); err != nil {
			t.Fatal(err)
		}
	case 3:
		if err := tree.RemoveLeaf(treekem.LeafIndex(p.removed)); err != nil {
			t.Fatal(err)
		}
		if tree.Leaf(treekem.LeafIndex(p.removed)) != nil {
			t.Error("removed leaf is not blank")
		}
	default:
		t.Fatalf("unexpected proposal type %d", p.typ)
	}
	if got := tree.Bytes(); !bytes.Equal(got, v.TreeAfter) {
		t.Errorf("tree after = %x\nwant %x", got, v.TreeAfter)
	}
	if got := tree.TreeHash(); !bytes.Equal(got, v.TreeHashAfter) {
		t.Errorf("tree hash after = %x, want %x", got, v.TreeHashAfter)
	}
	// A freshly parsed tree_after must agree with the incrementally updated
	// one, and the original must be untouched.
	fresh := parseTree(t, v.CipherSuite, v.TreeAfter)
	if !bytes.Equal(fresh.TreeHash(), tree.TreeHash()) {
		t.Error("tree hash of parsed tree_after differs from the updated tree")
	}
	if !bytes.Equal(before.Bytes(), v.TreeBefore) || !bytes.Equal(before.TreeHash(), v.TreeHashBefore) {
		t.Error("the clone taken before the operation changed")
	}
	if err := tree.VerifyParentHashes(); err != nil {
		t.Errorf("tree after: %v", err)
	}
}

// groupContext serializes a GroupContext (RFC 9420, Section 8.1) with no
// extensions.
func groupContext(cs hpke.CipherSuite, groupID []byte, epoch uint64, treeHash, cth []byte) []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint16(1)
		b.AddUint16(uint16(cs))
		wire.AddVarintBytes(b, groupID)
		b.AddUint64(epoch)
		wire.AddVarintBytes(b, treeHash)
		wire.AddVarintBytes(b, cth)
		wire.AddVarintBytes(b, nil)
	})
}

func testTreeKEM(t *testing.T, v *treeKEMVector) {
	cs := v.CipherSuite
	tree := parseTree(t, cs, v.RatchetTree)
	opts := &treekem.ValidateOptions{GroupID: v.GroupID, Now: vectorNow}
	if err := tree.Validate(opts); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	privs := map[treekem.LeafIndex]*treekem.PrivateKeys{}
	signers := map[treekem.LeafIndex]*hpke.SignaturePrivateKey{}
	for _, lp := range v.LeavesPrivate {
		l := treekem.LeafIndex(lp.Index)
		enc, err := cs.NewPrivateKey(lp.EncryptionPriv)
		if err != nil {
			t.Fatal(err)
		}
		k := treekem.NewPrivateKeys(cs, l, enc)
		for _, ps := range lp.PathSecrets {
			if err := k.SetPathSecret(treekem.NodeIndex(ps.Node), ps.PathSecret); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Verify(tree); err != nil {
			t.Fatalf("private state of leaf %d: %v", l, err)
		}
		if len(k.Nodes()) != len(lp.PathSecrets)+1 {
			t.Fatalf("leaf %d: %d keys for %d path secrets", l, len(k.Nodes()), len(lp.PathSecrets))
		}
		// The private keys survive serialization.
		k2, err := treekem.ParsePrivateKeys(k.Bytes())
		if err != nil || k2.Verify(tree) != nil || !bytes.Equal(k2.Bytes(), k.Bytes()) {
			t.Fatalf("leaf %d: private keys do not round-trip: %v", l, err)
		}
		privs[l] = k
		sig, err := cs.NewSignaturePrivateKey(lp.SignaturePriv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig.PublicKey(), tree.Leaf(l).SignatureKey) {
			t.Fatalf("signature key of leaf %d does not match the tree", l)
		}
		signers[l] = sig
	}
	if len(privs) == 0 || len(v.UpdatePaths) == 0 {
		t.Fatal("vector has no private leaves or no update paths")
	}

	for i, up := range v.UpdatePaths {
		sender := treekem.LeafIndex(up.Sender)
		t.Run(fmt.Sprintf("update-path-%d", i), func(t *testing.T) {
			path, err := treekem.ParseUpdatePath(up.UpdatePath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(path.Bytes(), up.UpdatePath) {
				t.Fatal("update path does not re-encode to the same bytes")
			}
			after := tree.Clone()
			if err := after.MergeUpdatePath(sender, path, nil, opts); err != nil {
				t.Fatalf("MergeUpdatePath: %v", err)
			}
			if got := after.TreeHash(); !bytes.Equal(got, up.TreeHashAfter) {
				t.Fatalf("tree hash after = %x, want %x", got, up.TreeHashAfter)
			}
			if err := after.VerifyParentHashes(); err != nil {
				t.Fatalf("tree after merge: %v", err)
			}
			if !bytes.Equal(tree.Bytes(), v.RatchetTree) {
				t.Fatal("merging into a clone changed the original tree")
			}
			gc := groupContext(cs, v.GroupID, v.Epoch, after.TreeHash(), v.ConfirmedTranscriptHash)
			receivers := 0
			for to, want := range up.PathSecrets {
				to := treekem.LeafIndex(to)
				priv := privs[to]
				if want == nil || priv == nil {
					if want != nil && tree.Leaf(to) == nil {
						t.Errorf("path secret for blank leaf %d", to)
					}
					continue
				}
				keys, commit, node, ps, err := treekem.DecryptUpdatePathForTest(after, priv, sender, path, gc, nil)
				if err != nil {
					t.Errorf("leaf %d: %v", to, err)
					continue
				}
				receivers++
				if !bytes.Equal(ps, want) {
					t.Errorf("leaf %d: path secret of node %d = %x, want %x", to, node, ps, want)
				}
				if !bytes.Equal(commit, up.CommitSecret) {
					t.Errorf("leaf %d: commit secret = %x, want %x", to, commit, up.CommitSecret)
				}
				if err := keys.Verify(after); err != nil {
					t.Errorf("leaf %d: new keys: %v", to, err)
				}
				if keys.Key(node) == nil {
					t.Errorf("leaf %d: no key for node %d", to, node)
				}
			}
			if receivers == 0 && len(after.FilteredDirectPath(sender)) > 0 {
				t.Error("no receiver checked")
			}
		})
	}

	for sender, signer := range signers {
		t.Run(fmt.Sprintf("generate/leaf-%d", sender), func(t *testing.T) {
			testGenerate(t, v, tree, sender, signer, privs, opts)
		})
	}
}

// testGenerate creates a fresh UpdatePath from sender and checks that every
// other private leaf processes it to the same tree hash and commit secret.
func testGenerate(t *testing.T, v *treeKEMVector, tree *treekem.Tree, sender treekem.LeafIndex, signer *hpke.SignaturePrivateKey, privs map[treekem.LeafIndex]*treekem.PrivateKeys, opts *treekem.ValidateOptions) {
	cs := v.CipherSuite
	committer := tree.Clone()
	pending, err := committer.GenerateUpdatePath(sender, nil, signer, v.GroupID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Erase()
	if err := committer.Validate(opts); err != nil {
		t.Fatalf("committer's tree: %v", err)
	}
	if err := pending.PrivateKeys().Verify(committer); err != nil {
		t.Fatalf("committer's keys: %v", err)
	}
	gc := groupContext(cs, v.GroupID, v.Epoch+1, committer.TreeHash(), v.ConfirmedTranscriptHash)
	path, err := pending.Encrypt(gc)
	if err != nil {
		t.Fatal(err)
	}
	path, err = treekem.ParseUpdatePath(path.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for to, priv := range privs {
		if to == sender {
			continue
		}
		recv := tree.Clone()
		if err := recv.MergeUpdatePath(sender, path, nil, opts); err != nil {
			t.Fatalf("leaf %d: MergeUpdatePath: %v", to, err)
		}
		if !bytes.Equal(recv.TreeHash(), committer.TreeHash()) {
			t.Fatalf("leaf %d: tree hash differs from the committer's", to)
		}
		keys, commit, node, ps, err := treekem.DecryptUpdatePathForTest(recv, priv, sender, path, gc, nil)
		if err != nil {
			t.Fatalf("leaf %d: %v", to, err)
		}
		if !bytes.Equal(commit, pending.CommitSecret()) {
			t.Errorf("leaf %d: commit secret differs from the committer's", to)
		}
		if want, ok := pending.PathSecret(to); !ok || !bytes.Equal(ps, want) {
			t.Errorf("leaf %d: path secret of node %d differs from the committer's", to, node)
		}
		if err := keys.Verify(recv); err != nil {
			t.Errorf("leaf %d: %v", to, err)
		}
		// A wrong group context must not decrypt.
		bad := slices.Clone(gc)
		binary.BigEndian.PutUint64(bad[len(bad)-8:], 0)
		bad[len(bad)-1] ^= 1
		if _, _, err := recv.DecryptUpdatePath(priv, sender, path, bad, nil); !errors.Is(err, treekem.ErrDecryption) {
			t.Errorf("leaf %d: decrypting with a wrong context: %v, want ErrDecryption", to, err)
		}
	}
}
