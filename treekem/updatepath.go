package treekem

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
)

const updatePathNodeLabel = "UpdatePathNode"

// PendingPath is a committer's UpdatePath between its two steps (RFC 9420,
// Sections 7.5 and 12.4.1): [Tree.GenerateUpdatePath] has already applied
// the new keys, parent hashes and signed leaf to the tree, so the caller
// can compute the new tree hash and the provisional GroupContext, which
// [PendingPath.Encrypt] then uses to encrypt the path secrets.
//
// It holds secrets: call [PendingPath.Erase] once the commit is sent or
// abandoned.
type PendingPath struct {
	suite        hpke.CipherSuite
	sender       LeafIndex
	leaf         *LeafNode
	path         []NodeIndex // filtered direct path
	copath       []NodeIndex // copath child of each path node
	pubKeys      [][]byte
	recipients   [][][]byte // per path node: public keys of the resolution, excluded leaves removed
	secrets      [][]byte   // path_secret[k] for path[k]
	commitSecret []byte
	priv         *PrivateKeys
}

// GenerateUpdatePath updates the direct path of leaf sender for a commit
// and applies the result to t (RFC 9420, Sections 7.4 and 7.5): it blanks
// the direct path, draws fresh path secrets and derives the key pairs of
// the filtered direct path, sets their parent hashes, and puts a new leaf
// node, signed with signer for groupID, at sender.
//
// The new leaf node is a copy of template, or of the current leaf if
// template is nil, with a fresh encryption key, source commit and the
// computed parent hash; its signature key defaults to signer's. For an
// external commit pass the template and sender = [Tree.LeftmostBlankLeaf];
// the tree is extended if needed.
//
// excluded lists the leaves added in the same commit, which receive their
// path secret in the Welcome rather than in the UpdatePath. Call this after
// applying the commit's proposals. On error t is unchanged.
func (t *Tree) GenerateUpdatePath(sender LeafIndex, template *LeafNode, signer *hpke.SignaturePrivateKey, groupID []byte, excluded []LeafIndex) (*PendingPath, error) {
	cs := t.suite
	if template == nil {
		template = t.Leaf(sender)
		if template == nil {
			return nil, fmt.Errorf("%w: leaf %d and no template", ErrBlankLeaf, sender)
		}
	}
	if uint64(sender) > uint64(t.LeafCount()) || (uint32(sender) == t.LeafCount() && t.LeftmostBlankLeaf() != sender) {
		return nil, fmt.Errorf("%w: sender %d out of range", ErrBlankLeaf, sender)
	}
	work := t
	if uint32(sender) == t.LeafCount() {
		work = t.Clone()
		work.extend()
	}

	leafKey, err := cs.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("treekem: generating leaf key: %w", err)
	}
	p := &PendingPath{suite: cs, sender: sender, priv: NewPrivateKeys(cs, sender, leafKey)}
	p.path, p.copath = work.filteredDirectPath(sender)

	// Recipients do not depend on the sender's direct path.
	excl := slices.Sorted(slices.Values(excluded))
	for _, c := range p.copath {
		var keys [][]byte
		for _, r := range work.resolve(c, nil) {
			if r.IsLeaf() {
				if _, found := slices.BinarySearch(excl, r.Leaf()); found {
					continue
				}
			}
			k := work.EncryptionKey(r)
			if k == nil {
				return nil, fmt.Errorf("%w: resolution of node %d names blank node %d", ErrInvalidTree, c, r)
			}
			keys = append(keys, k)
		}
		p.recipients = append(p.recipients, keys)
	}

	ps := randomSecret(cs)
	for _, n := range p.path {
		key, err := deriveNodeKey(cs, ps)
		if err != nil {
			p.Erase()
			return nil, err
		}
		p.priv.keys[n] = key
		p.pubKeys = append(p.pubKeys, key.PublicKey())
		p.secrets = append(p.secrets, ps)
		ps = nextPathSecret(cs, ps)
	}
	p.commitSecret = ps

	parents, leafPH := work.pathParentHashes(p.pubKeys, p.copath)

	leaf := template.clone()
	leaf.EncryptionKey = leafKey.PublicKey()
	leaf.Source = SourceCommit
	leaf.Lifetime = Lifetime{}
	leaf.ParentHash = leafPH
	if len(leaf.SignatureKey) == 0 {
		leaf.SignatureKey = signer.PublicKey()
	}
	if err := leaf.Sign(cs, signer, groupID, sender); err != nil {
		p.Erase()
		return nil, err
	}
	if err := work.checkUnique(leaf, int64(sender)); err != nil {
		p.Erase()
		return nil, err
	}
	for k, pub := range p.pubKeys {
		if _, ok := work.idx.enc.get(string(pub)); ok {
			p.Erase()
			return nil, fmt.Errorf("%w: derived key of node %d", ErrDuplicateKey, p.path[k])
		}
	}
	p.leaf = leaf

	if work != t {
		*t = *work
	}
	t.applyPath(sender, leaf, p.path, parents)
	return p, nil
}

// pathParentHashes returns the parent nodes of a filtered direct path with
// the given new public keys, their parent_hash fields filled in from the
// root down, and the parent hash the leaf must carry (RFC 9420, Section
// 7.9). The copath children are unchanged by the path, and the new nodes
// have no unmerged leaves, so each original sibling tree hash is the
// current tree hash of the copath child.
func (t *Tree) pathParentHashes(pubKeys [][]byte, copath []NodeIndex) ([]*ParentNode, []byte) {
	parents := make([]*ParentNode, len(pubKeys))
	ph := []byte{}
	for k := len(pubKeys) - 1; k >= 0; k-- {
		parents[k] = &ParentNode{EncryptionKey: pubKeys[k], ParentHash: ph}
		ph = t.parentHash(pubKeys[k], ph, t.nodeHash(copath[k]))
	}
	return parents, ph
}

// applyPath blanks the direct path of sender, sets the filtered direct path
// nodes and the leaf.
func (t *Tree) applyPath(sender LeafIndex, leaf *LeafNode, path []NodeIndex, parents []*ParentNode) {
	t.blankDirectPath(sender)
	for k, n := range path {
		t.setParent(n, parents[k])
	}
	t.setLeaf(sender, leaf)
}

// LeafNode returns the committer's new, signed leaf node. The caller must
// not modify it.
func (p *PendingPath) LeafNode() *LeafNode { return p.leaf }

// PrivateKeys returns the committer's private keys for the new epoch: its
// new leaf key and the keys of its filtered direct path.
func (p *PendingPath) PrivateKeys() *PrivateKeys { return p.priv }

// CommitSecret returns the commit secret, path_secret[n+1] (RFC 9420,
// Section 12.4.1). It is secret; the caller must not modify it.
func (p *PendingPath) CommitSecret() []byte { return p.commitSecret }

// PathSecret returns the path secret a member added in this commit at leaf
// joiner receives in its Welcome: that of the lowest node of the filtered
// direct path above it (RFC 9420, Section 12.4.3.1). The caller must not
// modify it.
func (p *PendingPath) PathSecret(joiner LeafIndex) ([]byte, bool) {
	for k, c := range p.copath {
		if inSubtree(joiner, c) {
			return p.secrets[k], true
		}
	}
	return nil, false
}

// Encrypt builds the UpdatePath: it encrypts each path secret to every
// node of the resolution of the corresponding copath child, excluded leaves
// left out, with the provisional GroupContext groupContext as context (RFC
// 9420, Sections 7.6 and 12.4.1).
func (p *PendingPath) Encrypt(groupContext []byte) (*UpdatePath, error) {
	if p.leaf == nil {
		return nil, fmt.Errorf("treekem: encrypting an erased update path")
	}
	up := &UpdatePath{LeafNode: *p.leaf, Nodes: make([]UpdatePathNode, len(p.path))}
	for k := range p.path {
		n := &up.Nodes[k]
		n.EncryptionKey = p.pubKeys[k]
		n.EncryptedPathSecret = make([]HPKECiphertext, len(p.recipients[k]))
		for j, pub := range p.recipients[k] {
			kem, ct, err := p.suite.EncryptWithLabel(pub, updatePathNodeLabel, groupContext, p.secrets[k])
			if err != nil {
				return nil, fmt.Errorf("treekem: encrypting path secret of node %d: %w", p.path[k], err)
			}
			n.EncryptedPathSecret[j] = HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
		}
	}
	return up, nil
}

// Erase clears the path secrets and commit secret. The private keys
// returned by [PendingPath.PrivateKeys] stay usable.
func (p *PendingPath) Erase() {
	for _, s := range p.secrets {
		clear(s)
	}
	clear(p.commitSecret)
	p.secrets, p.commitSecret = nil, nil
	p.leaf = nil
}

// MergeUpdatePath validates the UpdatePath of a commit from leaf sender and
// merges its public part into t (RFC 9420, Sections 7.5 and 12.4.2): the
// leaf node must be valid for source commit (see [Tree.ValidateLeafNode]),
// no public key in the path may already be in the tree, the path must have
// one node per node of the sender's filtered direct path with one
// ciphertext per member of the copath child's resolution minus excluded
// (the leaves added by the same commit), and the leaf's parent_hash must
// equal the one recomputed from the path. Then the direct path is blanked
// and the path's keys and the new leaf are set.
//
// For an external commit, sender is [Tree.LeftmostBlankLeaf] and the tree
// is extended if needed. On error t is unchanged.
func (t *Tree) MergeUpdatePath(sender LeafIndex, path *UpdatePath, excluded []LeafIndex, opts *ValidateOptions) error {
	if uint64(sender) > uint64(t.LeafCount()) || (uint32(sender) == t.LeafCount() && t.LeftmostBlankLeaf() != sender) {
		return fmt.Errorf("%w: sender %d out of range", ErrBlankLeaf, sender)
	}
	work := t
	if uint32(sender) == t.LeafCount() {
		work = t.Clone()
		work.extend()
	}
	leaf := new(LeafNode)
	*leaf = path.LeafNode
	if err := work.ValidateLeafNode(leaf, SourceCommit, sender, opts); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidUpdatePath, err)
	}
	fdp, copath := work.filteredDirectPath(sender)
	if len(path.Nodes) != len(fdp) {
		return fmt.Errorf("%w: %d nodes for a filtered direct path of %d", ErrInvalidUpdatePath, len(path.Nodes), len(fdp))
	}
	excl := slices.Sorted(slices.Values(excluded))
	pubKeys := make([][]byte, len(fdp))
	for k := range path.Nodes {
		pub := path.Nodes[k].EncryptionKey
		if _, ok := work.idx.enc.get(string(pub)); ok || bytes.Equal(pub, leaf.EncryptionKey) || slices.ContainsFunc(pubKeys[:k], func(q []byte) bool { return bytes.Equal(q, pub) }) {
			return fmt.Errorf("%w: %w: key of path node %d", ErrInvalidUpdatePath, ErrDuplicateKey, k)
		}
		if err := t.suite.ValidatePublicKey(pub); err != nil {
			return fmt.Errorf("%w: key of path node %d: %w", ErrInvalidUpdatePath, k, err)
		}
		pubKeys[k] = pub
		if want := work.recipientCount(copath[k], excl); len(path.Nodes[k].EncryptedPathSecret) != want {
			return fmt.Errorf("%w: node %d has %d ciphertexts for %d recipients", ErrInvalidUpdatePath, fdp[k], len(path.Nodes[k].EncryptedPathSecret), want)
		}
	}
	parents, leafPH := work.pathParentHashes(pubKeys, copath)
	if !bytes.Equal(leafPH, leaf.ParentHash) {
		return fmt.Errorf("%w: %w: leaf %d", ErrInvalidUpdatePath, ErrParentHashMismatch, sender)
	}
	if work != t {
		*t = *work
	}
	t.applyPath(sender, leaf, fdp, parents)
	return nil
}

// recipientCount returns the size of the resolution of c without the leaves
// in excluded (sorted).
func (t *Tree) recipientCount(c NodeIndex, excluded []LeafIndex) int {
	n := 0
	for _, r := range t.resolve(c, nil) {
		if r.IsLeaf() {
			if _, found := slices.BinarySearch(excluded, r.Leaf()); found {
				continue
			}
		}
		n++
	}
	return n
}

// DecryptUpdatePath performs the receiver's second step for a commit from
// leaf sender whose UpdatePath t has already merged with
// [Tree.MergeUpdatePath] (RFC 9420, Section 7.5): it finds the node of the
// sender's filtered direct path whose copath child holds the member,
// decrypts that node's path secret with a private key of priv (using the
// provisional GroupContext groupContext), derives the path secrets and key
// pairs of the nodes above, and checks that the public keys match the tree.
// excluded lists the leaves added by the same commit.
//
// It returns the member's private keys for the new epoch, without the keys
// of the sender's old direct path, and the commit secret; priv is
// unchanged.
func (t *Tree) DecryptUpdatePath(priv *PrivateKeys, sender LeafIndex, path *UpdatePath, groupContext []byte, excluded []LeafIndex) (*PrivateKeys, []byte, error) {
	keys, commitSecret, _, ps, err := t.decryptUpdatePath(priv, sender, path, groupContext, excluded)
	clear(ps)
	return keys, commitSecret, err
}

// decryptUpdatePath is DecryptUpdatePath that also returns the decrypted
// path secret and the node it belongs to (for tests).
func (t *Tree) decryptUpdatePath(priv *PrivateKeys, sender LeafIndex, path *UpdatePath, groupContext []byte, excluded []LeafIndex) (*PrivateKeys, []byte, NodeIndex, []byte, error) {
	me := priv.leaf
	if !t.inRange(sender) || !t.inRange(me) {
		return nil, nil, 0, nil, fmt.Errorf("%w: leaf out of range", ErrBlankLeaf)
	}
	if me == sender {
		return nil, nil, 0, nil, fmt.Errorf("%w: the sender cannot decrypt its own path", ErrInvalidUpdatePath)
	}
	fdp, copath := t.filteredDirectPath(sender)
	if len(path.Nodes) != len(fdp) {
		return nil, nil, 0, nil, fmt.Errorf("%w: %d nodes for a filtered direct path of %d", ErrInvalidUpdatePath, len(path.Nodes), len(fdp))
	}
	k := slices.IndexFunc(copath, func(c NodeIndex) bool { return inSubtree(me, c) })
	if k < 0 {
		return nil, nil, 0, nil, fmt.Errorf("%w: leaf %d is not below the sender's filtered direct path", ErrInvalidUpdatePath, me)
	}
	excl := slices.Sorted(slices.Values(excluded))
	var res []NodeIndex
	for _, r := range t.resolve(copath[k], nil) {
		if r.IsLeaf() {
			if _, found := slices.BinarySearch(excl, r.Leaf()); found {
				continue
			}
		}
		res = append(res, r)
	}
	cts := path.Nodes[k].EncryptedPathSecret
	if len(cts) != len(res) {
		return nil, nil, 0, nil, fmt.Errorf("%w: node %d has %d ciphertexts for %d recipients", ErrInvalidUpdatePath, fdp[k], len(cts), len(res))
	}
	j := slices.IndexFunc(res, func(r NodeIndex) bool {
		key := priv.keys[r]
		return key != nil && bytes.Equal(key.PublicKey(), t.EncryptionKey(r))
	})
	if j < 0 {
		return nil, nil, 0, nil, fmt.Errorf("%w: below node %d", ErrNoPrivateKey, fdp[k])
	}
	ps, err := t.suite.DecryptWithLabel(priv.keys[res[j]], updatePathNodeLabel, groupContext, cts[j].KEMOutput, cts[j].Ciphertext)
	if err != nil {
		return nil, nil, 0, nil, fmt.Errorf("%w: node %d: %w", ErrDecryption, fdp[k], err)
	}
	out, commitSecret, err := t.derivePath(priv, sender, fdp, k, ps)
	if err != nil {
		clear(ps)
		return nil, nil, 0, nil, err
	}
	return out, commitSecret, fdp[k], ps, nil
}

// ImportPathSecret gives a member added by a commit from leaf sender the
// keys of the sender's filtered direct path above it, from the path secret
// in its Welcome (RFC 9420, Section 12.4.3.1), and checks them against t,
// the tree of the new epoch. It returns the member's new private keys and
// the commit secret; priv and pathSecret are unchanged, and the caller
// should clear pathSecret.
func (t *Tree) ImportPathSecret(priv *PrivateKeys, sender LeafIndex, pathSecret []byte) (*PrivateKeys, []byte, error) {
	if !t.inRange(sender) || !t.inRange(priv.leaf) {
		return nil, nil, fmt.Errorf("%w: leaf out of range", ErrBlankLeaf)
	}
	fdp, copath := t.filteredDirectPath(sender)
	k := slices.IndexFunc(copath, func(c NodeIndex) bool { return inSubtree(priv.leaf, c) })
	if k < 0 || priv.leaf == sender {
		return nil, nil, fmt.Errorf("%w: leaf %d is not below the sender's filtered direct path", ErrInvalidUpdatePath, priv.leaf)
	}
	return t.derivePath(priv, sender, fdp, k, pathSecret)
}

// derivePath derives the key pairs of fdp[k:] from ps, the path secret of
// fdp[k], checks them against t, and returns a copy of priv holding them
// and none for the rest of the sender's direct path, and the commit
// secret. It clears the intermediate path secrets (but not ps).
func (t *Tree) derivePath(priv *PrivateKeys, sender LeafIndex, fdp []NodeIndex, k int, ps []byte) (*PrivateKeys, []byte, error) {
	out := priv.Clone()
	for _, n := range treemath.DirectPath(sender.Node().tm(), t.LeafCount()) {
		delete(out.keys, NodeIndex(n))
	}
	cur := ps
	for i, n := range fdp[k:] {
		key, err := deriveNodeKey(t.suite, cur)
		if err == nil && !bytes.Equal(key.PublicKey(), t.EncryptionKey(n)) {
			err = fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, n)
		}
		if err != nil {
			if i > 0 {
				clear(cur)
			}
			return nil, nil, err
		}
		out.keys[n] = key
		next := nextPathSecret(t.suite, cur)
		if i > 0 {
			clear(cur)
		}
		cur = next
	}
	return out, cur, nil
}
