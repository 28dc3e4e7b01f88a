package testvectors

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/treekem"
)

// This file holds the ratchet-tree vector types: tree-validation,
// tree-operations and treekem.

type treeValidationVector struct {
	CipherSuite uint16     `json:"cipher_suite"`
	Tree        hexBytes   `json:"tree"`
	GroupID     hexBytes   `json:"group_id"`
	Resolutions [][]uint32 `json:"resolutions"`
	TreeHashes  []hexBytes `json:"tree_hashes"`
}

// parseTree parses a ratchet tree and checks it re-encodes to data.
func (c *checker) parseTree(cs hpke.CipherSuite, data []byte) *treekem.Tree {
	tree, err := treekem.ParseTree(cs, data)
	c.must("ParseTree", err)
	if !bytes.Equal(tree.Bytes(), data) {
		c.fatalf("tree does not re-encode to the same bytes")
	}
	return tree
}

func validateOptions(groupID []byte, now time.Time) *treekem.ValidateOptions {
	return &treekem.ValidateOptions{GroupID: groupID, Now: func() time.Time { return now }}
}

// checkTreeValidation checks resolutions (RFC 9420, Section 4.1.1), tree
// hashes (Section 7.8), parent hashes (Section 7.9) and leaf signatures
// (Section 7.3) of a ratchet tree.
func checkTreeValidation(c *checker, v *treeValidationVector) {
	cs := c.suite(v.CipherSuite)
	tree := c.parseTree(cs, v.Tree)
	if int(tree.Width()) != len(v.TreeHashes) || len(v.Resolutions) != len(v.TreeHashes) {
		c.fatalf("tree has %d nodes, vector %d hashes and %d resolutions", tree.Width(), len(v.TreeHashes), len(v.Resolutions))
	}
	c.sub("resolutions", func() {
		for n, want := range v.Resolutions {
			got := tree.Resolution(treekem.NodeIndex(n))
			if !slices.EqualFunc(got, want, func(a treekem.NodeIndex, b uint32) bool { return uint32(a) == b }) {
				c.errorf("resolution of node %d = %v, want %v", n, got, want)
			}
		}
	})
	c.sub("tree-hashes", func() {
		for n, want := range v.TreeHashes {
			c.equal(fmt.Sprintf("tree hash of node %d", n), tree.NodeTreeHash(treekem.NodeIndex(n)), want)
		}
	})
	c.sub("parent-hashes", func() { c.must("VerifyParentHashes", tree.VerifyParentHashes()) })
	c.sub("leaf-signatures", func() {
		for l, leaf := range tree.Leaves() {
			if err := leaf.VerifySignature(cs, v.GroupID, l); err != nil {
				c.errorf("leaf %d: %v", l, err)
			}
		}
	})
	c.sub("validate", func() {
		c.must("Validate", tree.Validate(validateOptions(v.GroupID, VectorTime)))
		if hasKeyPackageLeaf(tree) {
			if err := tree.Validate(validateOptions(v.GroupID, VectorTime.AddDate(2, 0, 0))); !errors.Is(err, treekem.ErrLifetime) {
				c.errorf("Validate two years later = %v, want ErrLifetime", err)
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

func genTreeValidation(g *generator) ([]treeValidationVector, error) {
	var out []treeValidationVector
	for _, cs := range rfcSuites {
		// A fresh group of 3, and a group of 6 where members left, updated
		// and committed, so the tree has blanks, unmerged leaves and
		// parent hashes from several committers.
		s, err := newSim(g, cs, 3)
		if err != nil {
			return nil, err
		}
		if v, err := treeValidationOf(s); err != nil {
			return nil, err
		} else {
			out = append(out, v)
		}
		s, err = newSim(g, cs, 6)
		if err != nil {
			return nil, err
		}
		if _, err := s.commit(4, &mls.CommitOptions{Remove: []mls.LeafIndex{2}}, nil); err != nil {
			return nil, err
		}
		if _, err := s.commit(1, &mls.CommitOptions{ForcePath: true}, nil); err != nil {
			return nil, err
		}
		if _, _, err := s.add(5, 2); err != nil {
			return nil, err
		}
		v, err := treeValidationOf(s)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func treeValidationOf(s *sim) (treeValidationVector, error) {
	g := s.members[s.live()[0]]
	v := treeValidationVector{CipherSuite: uint16(s.cs), Tree: slices.Clone(g.RatchetTree()), GroupID: slices.Clone(g.GroupID())}
	tree, err := treekem.ParseTree(s.cs, v.Tree)
	if err != nil {
		return v, err
	}
	for n := range tree.Width() {
		res := []uint32{}
		for _, r := range tree.Resolution(treekem.NodeIndex(n)) {
			res = append(res, uint32(r))
		}
		v.Resolutions = append(v.Resolutions, res)
		v.TreeHashes = append(v.TreeHashes, tree.NodeTreeHash(treekem.NodeIndex(n)))
	}
	return v, nil
}

type treeOperationsVector struct {
	CipherSuite    uint16   `json:"cipher_suite"`
	TreeBefore     hexBytes `json:"tree_before"`
	Proposal       hexBytes `json:"proposal"`
	ProposalSender uint32   `json:"proposal_sender"`
	TreeHashBefore hexBytes `json:"tree_hash_before"`
	TreeAfter      hexBytes `json:"tree_after"`
	TreeHashAfter  hexBytes `json:"tree_hash_after"`
}

// applyTreeOperation applies an Add, Update or Remove proposal to tree
// (RFC 9420, Sections 12.1.1-12.1.3).
func applyTreeOperation(tree *treekem.Tree, p *mls.Proposal, sender uint32) error {
	switch {
	case p.Type == mls.ProposalTypeAdd && p.Add != nil:
		_, err := tree.AddLeaf(&p.Add.KeyPackage.LeafNode)
		return err
	case p.Type == mls.ProposalTypeUpdate && p.Update != nil:
		return tree.UpdateLeaf(treekem.LeafIndex(sender), &p.Update.LeafNode)
	case p.Type == mls.ProposalTypeRemove && p.Remove != nil:
		return tree.RemoveLeaf(p.Remove.Removed)
	}
	return fmt.Errorf("unexpected proposal type %d", p.Type)
}

// checkTreeOperations checks that applying a proposal to a tree gives
// the expected tree and tree hash.
func checkTreeOperations(c *checker, v *treeOperationsVector) {
	cs := c.suite(v.CipherSuite)
	tree := c.parseTree(cs, v.TreeBefore)
	c.equal("tree hash before", tree.TreeHash(), v.TreeHashBefore)
	c.must("tree before", tree.VerifyParentHashes())
	p, err := mls.ParseProposal(v.Proposal)
	c.must("proposal", err)
	before := tree.Clone()
	c.must("applying the proposal", applyTreeOperation(tree, p, v.ProposalSender))
	if p.Type == mls.ProposalTypeAdd {
		if _, err := tree.AddLeaf(&p.Add.KeyPackage.LeafNode); !errors.Is(err, treekem.ErrDuplicateKey) {
			c.errorf("adding the same leaf twice: %v, want ErrDuplicateKey", err)
		}
	}
	c.equal("tree after", tree.Bytes(), v.TreeAfter)
	c.equal("tree hash after", tree.TreeHash(), v.TreeHashAfter)
	fresh := c.parseTree(cs, v.TreeAfter)
	c.equal("tree hash of the parsed tree_after", fresh.TreeHash(), tree.TreeHash())
	if !bytes.Equal(before.Bytes(), v.TreeBefore) {
		c.errorf("the clone taken before the operation changed")
	}
	c.must("tree after", tree.VerifyParentHashes())
}

func genTreeOperations(g *generator) ([]treeOperationsVector, error) {
	var out []treeOperationsVector
	for _, cs := range rfcSuites {
		s, err := newSim(g, cs, 5)
		if err != nil {
			return nil, err
		}
		if _, err := s.commit(3, &mls.CommitOptions{ForcePath: true}, nil); err != nil {
			return nil, err
		}
		kp, err := s.newKeyPackage()
		if err != nil {
			return nil, err
		}
		upd, err := s.members[1].ProposeUpdate()
		if err != nil {
			return nil, err
		}
		if upd.PublicMessage == nil || upd.PublicMessage.Content.Proposal == nil {
			return nil, errors.New("update proposal is not a PublicMessage")
		}
		for _, op := range []struct {
			p      *mls.Proposal
			sender uint32
		}{
			{&mls.Proposal{Type: mls.ProposalTypeAdd, Add: &mls.AddProposal{KeyPackage: *kp.KeyPackage}}, 0},
			{upd.PublicMessage.Content.Proposal, 1},
			{&mls.Proposal{Type: mls.ProposalTypeRemove, Remove: &mls.RemoveProposal{Removed: 2}}, 4},
		} {
			tree, err := treekem.ParseTree(cs, s.members[0].RatchetTree())
			if err != nil {
				return nil, err
			}
			v := treeOperationsVector{CipherSuite: uint16(cs), TreeBefore: tree.Bytes(), TreeHashBefore: tree.TreeHash(), ProposalSender: op.sender}
			if v.Proposal, err = op.p.Bytes(); err != nil {
				return nil, err
			}
			if err := applyTreeOperation(tree, op.p, op.sender); err != nil {
				return nil, err
			}
			v.TreeAfter, v.TreeHashAfter = tree.Bytes(), tree.TreeHash()
			out = append(out, v)
		}
	}
	return out, nil
}

type treeKEMPathSecret struct {
	Node       uint32   `json:"node"`
	PathSecret hexBytes `json:"path_secret"`
}

type treeKEMLeafPrivate struct {
	Index          uint32              `json:"index"`
	EncryptionPriv hexBytes            `json:"encryption_priv"`
	SignaturePriv  hexBytes            `json:"signature_priv"`
	PathSecrets    []treeKEMPathSecret `json:"path_secrets"`
}

type treeKEMUpdatePath struct {
	Sender        uint32     `json:"sender"`
	UpdatePath    hexBytes   `json:"update_path"`
	PathSecrets   []hexBytes `json:"path_secrets"`
	CommitSecret  hexBytes   `json:"commit_secret"`
	TreeHashAfter hexBytes   `json:"tree_hash_after"`
}

type treeKEMVector struct {
	CipherSuite             uint16               `json:"cipher_suite"`
	GroupID                 hexBytes             `json:"group_id"`
	Epoch                   uint64               `json:"epoch"`
	ConfirmedTranscriptHash hexBytes             `json:"confirmed_transcript_hash"`
	RatchetTree             hexBytes             `json:"ratchet_tree"`
	LeavesPrivate           []treeKEMLeafPrivate `json:"leaves_private"`
	UpdatePaths             []treeKEMUpdatePath  `json:"update_paths"`
}

// groupContextBytes serializes a GroupContext with no extensions
// (RFC 9420, Section 8.1).
func groupContextBytes(cs hpke.CipherSuite, groupID []byte, epoch uint64, treeHash, cth []byte) []byte {
	gc := keyschedule.GroupContext{
		Version: keyschedule.MLS10, CipherSuite: cs, GroupID: groupID, Epoch: epoch,
		TreeHash: treeHash, ConfirmedTranscriptHash: cth,
	}
	return gc.Bytes()
}

// checkTreeKEM checks UpdatePath processing (RFC 9420, Sections 7.4-7.6):
// every private leaf decrypts the vector's paths to the expected path and
// commit secrets, and paths this implementation creates are decrypted by
// every other private leaf.
func checkTreeKEM(c *checker, v *treeKEMVector) {
	cs := c.suite(v.CipherSuite)
	tree := c.parseTree(cs, v.RatchetTree)
	opts := validateOptions(v.GroupID, VectorTime)
	c.must("Validate", tree.Validate(opts))

	privs := map[treekem.LeafIndex]*treekem.PrivateKeys{}
	signers := map[treekem.LeafIndex]*hpke.SignaturePrivateKey{}
	var order []treekem.LeafIndex
	for _, lp := range v.LeavesPrivate {
		l := treekem.LeafIndex(lp.Index)
		enc, err := cs.NewPrivateKey(lp.EncryptionPriv)
		c.must("encryption_priv", err)
		k := treekem.NewPrivateKeys(cs, l, enc)
		for _, ps := range lp.PathSecrets {
			c.must(fmt.Sprintf("leaf %d: path secret of node %d", l, ps.Node), k.SetPathSecret(treekem.NodeIndex(ps.Node), ps.PathSecret))
		}
		c.must(fmt.Sprintf("private state of leaf %d", l), k.Verify(tree))
		if len(k.Nodes()) != len(lp.PathSecrets)+1 {
			c.fatalf("leaf %d: %d keys for %d path secrets", l, len(k.Nodes()), len(lp.PathSecrets))
		}
		privs[l] = k
		sig, err := cs.NewSignaturePrivateKey(lp.SignaturePriv)
		c.must("signature_priv", err)
		if tree.Leaf(l) == nil || !bytes.Equal(sig.PublicKey(), tree.Leaf(l).SignatureKey) {
			c.fatalf("signature key of leaf %d does not match the tree", l)
		}
		signers[l] = sig
		order = append(order, l)
	}
	if len(privs) == 0 || len(v.UpdatePaths) == 0 {
		c.fatalf("vector has no private leaves or no update paths")
	}

	for i, up := range v.UpdatePaths {
		sender := treekem.LeafIndex(up.Sender)
		c.sub(fmt.Sprintf("update-path-%d", i), func() {
			path, err := treekem.ParseUpdatePath(up.UpdatePath)
			c.must("ParseUpdatePath", err)
			if !bytes.Equal(path.Bytes(), up.UpdatePath) {
				c.fatalf("update path does not re-encode to the same bytes")
			}
			after := tree.Clone()
			c.must("MergeUpdatePath", after.MergeUpdatePath(sender, path, nil, opts))
			if !c.equal("tree hash after", after.TreeHash(), up.TreeHashAfter) {
				return
			}
			c.must("parent hashes after the merge", after.VerifyParentHashes())
			gc := groupContextBytes(cs, v.GroupID, v.Epoch, after.TreeHash(), v.ConfirmedTranscriptHash)
			receivers := 0
			for to, want := range up.PathSecrets {
				to := treekem.LeafIndex(to)
				priv := privs[to]
				if want == nil || priv == nil {
					if want != nil && tree.Leaf(to) == nil {
						c.errorf("path secret for blank leaf %d", to)
					}
					continue
				}
				keys, commit, err := after.DecryptUpdatePath(priv, sender, path, gc, nil)
				if err != nil {
					c.errorf("leaf %d: DecryptUpdatePath: %v", to, err)
					continue
				}
				receivers++
				c.equal(fmt.Sprintf("leaf %d: commit secret", to), commit, up.CommitSecret)
				if err := keys.Verify(after); err != nil {
					c.errorf("leaf %d: new keys: %v", to, err)
				}
				// The expected path secret, imported as a joiner would,
				// must give keys that match the tree and the same commit
				// secret.
				imported, commit2, err := after.ImportPathSecret(priv, sender, want)
				if err != nil {
					c.errorf("leaf %d: importing path_secret: %v", to, err)
					continue
				}
				c.equal(fmt.Sprintf("leaf %d: commit secret from path_secret", to), commit2, up.CommitSecret)
				if err := imported.Verify(after); err != nil {
					c.errorf("leaf %d: keys from path_secret: %v", to, err)
				}
			}
			if receivers == 0 && len(after.FilteredDirectPath(sender)) > 0 {
				c.errorf("no receiver checked")
			}
		})
	}

	for _, sender := range order {
		c.sub(fmt.Sprintf("generate/leaf-%d", sender), func() {
			committer := tree.Clone()
			pending, err := committer.GenerateUpdatePath(sender, nil, signers[sender], v.GroupID, nil)
			c.must("GenerateUpdatePath", err)
			defer pending.Erase()
			c.must("committer's tree", committer.Validate(opts))
			gc := groupContextBytes(cs, v.GroupID, v.Epoch+1, committer.TreeHash(), v.ConfirmedTranscriptHash)
			path, err := pending.Encrypt(gc)
			c.must("Encrypt", err)
			path, err = treekem.ParseUpdatePath(path.Bytes())
			c.must("ParseUpdatePath", err)
			for _, to := range order {
				if to == sender {
					continue
				}
				recv := tree.Clone()
				c.must(fmt.Sprintf("leaf %d: MergeUpdatePath", to), recv.MergeUpdatePath(sender, path, nil, opts))
				c.equal(fmt.Sprintf("leaf %d: tree hash", to), recv.TreeHash(), committer.TreeHash())
				keys, commit, err := recv.DecryptUpdatePath(privs[to], sender, path, gc, nil)
				c.must(fmt.Sprintf("leaf %d: DecryptUpdatePath", to), err)
				c.equal(fmt.Sprintf("leaf %d: commit secret", to), commit, pending.CommitSecret())
				if err := keys.Verify(recv); err != nil {
					c.errorf("leaf %d: %v", to, err)
				}
			}
		})
	}
}

func genTreeKEM(g *generator) ([]treeKEMVector, error) {
	var out []treeKEMVector
	for _, cs := range rfcSuites {
		for _, n := range []int{5, 8} {
			v, err := genTreeKEMCase(g, cs, n)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// genTreeKEMCase builds a tree of n leaves with leaf 3 removed, has leaf 0
// commit a path so parent nodes are filled, and then records paths from
// two more senders.
func genTreeKEMCase(g *generator, cs hpke.CipherSuite, n int) (treeKEMVector, error) {
	s := &sim{g: g, cs: cs}
	v := treeKEMVector{CipherSuite: uint16(cs), GroupID: g.bytes(16), Epoch: uint64(g.intn(1000)), ConfirmedTranscriptHash: g.bytes(cs.HashSize())}
	tree := treekem.NewTree(cs)
	var kps []*mls.KeyPackagePrivate
	for range n {
		kp, err := s.newKeyPackage()
		if err != nil {
			return v, err
		}
		if _, err := tree.AddLeaf(&kp.KeyPackage.LeafNode); err != nil {
			return v, err
		}
		kps = append(kps, kp)
	}
	if err := tree.RemoveLeaf(3); err != nil {
		return v, err
	}
	pending, err := tree.GenerateUpdatePath(0, nil, kps[0].SignatureKey, v.GroupID, nil)
	if err != nil {
		return v, err
	}
	defer pending.Erase()
	v.RatchetTree = tree.Bytes()
	fdp := tree.FilteredDirectPath(0)
	for l := 1; l < n; l++ {
		if tree.Leaf(treekem.LeafIndex(l)) == nil {
			continue
		}
		lp := treeKEMLeafPrivate{Index: uint32(l), EncryptionPriv: kps[l].EncryptionKey.Bytes(), SignaturePriv: kps[l].SignatureKey.Bytes()}
		ps, ok := pending.PathSecret(treekem.LeafIndex(l))
		if !ok {
			return v, fmt.Errorf("no path secret for leaf %d", l)
		}
		ps = slices.Clone(ps)
		for _, node := range fdp {
			if !treemath.IsAncestor(treemath.NodeIndex(node), treemath.NodeIndex(treekem.LeafIndex(l).Node())) {
				continue
			}
			lp.PathSecrets = append(lp.PathSecrets, treeKEMPathSecret{Node: uint32(node), PathSecret: ps})
			ps = cs.DeriveSecret(ps, "path")
		}
		v.LeavesPrivate = append(v.LeavesPrivate, lp)
	}
	for _, sender := range []int{1, n - 1} {
		after := tree.Clone()
		p, err := after.GenerateUpdatePath(treekem.LeafIndex(sender), nil, kps[sender].SignatureKey, v.GroupID, nil)
		if err != nil {
			return v, err
		}
		gc := groupContextBytes(cs, v.GroupID, v.Epoch, after.TreeHash(), v.ConfirmedTranscriptHash)
		path, err := p.Encrypt(gc)
		if err != nil {
			return v, err
		}
		up := treeKEMUpdatePath{Sender: uint32(sender), UpdatePath: path.Bytes(), CommitSecret: slices.Clone(p.CommitSecret()), TreeHashAfter: after.TreeHash()}
		for l := range tree.LeafCount() {
			var want []byte
			if int(l) != sender && tree.Leaf(treekem.LeafIndex(l)) != nil {
				ps, _ := p.PathSecret(treekem.LeafIndex(l))
				want = slices.Clone(ps)
			}
			up.PathSecrets = append(up.PathSecrets, want)
		}
		p.Erase()
		v.UpdatePaths = append(v.UpdatePaths, up)
	}
	return v, nil
}
