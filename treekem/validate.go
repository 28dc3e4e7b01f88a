package treekem

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microchat/e2ee/internal/treemath"
)

// ValidateOptions carries the group parameters that leaf node validation
// (RFC 9420, Section 7.3) checks leaves against.
type ValidateOptions struct {
	// GroupID is signed by leaf nodes whose source is update or commit.
	GroupID []byte
	// RequiredCapabilities is the group's required_capabilities extension
	// (RFC 9420, Section 11.1), or nil if it has none.
	RequiredCapabilities *RequiredCapabilities
	// Now returns the current time, against which the lifetime of
	// key_package leaf nodes is checked. If nil, lifetimes are not checked
	// against a clock (RFC 9420 only recommends it for received nodes). It
	// may be called concurrently by [Tree.Validate].
	Now func() time.Time
	// MaxLifetime, if positive, is the longest total lifetime (not_after
	// minus not_before) accepted for a key_package leaf node (RFC 9420,
	// Section 7.2).
	MaxLifetime time.Duration
	// Version, if non-zero, is the group's protocol version: a leaf node
	// must then list it, and the tree's cipher suite, in its capabilities
	// (RFC 9420, Sections 7.2, 10 and 11.1: every member supports the
	// group's version and cipher suite, and a client lists every version
	// and suite it supports).
	Version ProtocolVersion
	// GroupExtensions are the types of the group's GroupContext
	// extensions, which every leaf node must support: list, unless they
	// are default types (RFC 9420, Sections 7.3 and 13.4).
	GroupExtensions []ExtensionType
	// Successor, if set, is called by [Tree.ValidateLeafNode] when a leaf
	// node replaces the non-blank leaf at the same position (an Update, or
	// the leaf of a commit's UpdatePath), with the old and the new node,
	// once every other check on the new node has passed. It is where the
	// application checks that the new credential is a valid successor of
	// the old one (RFC 9420, Section 5.3.1). An error from it is wrapped so
	// that it matches [ErrCredential].
	Successor func(at LeafIndex, old, new *LeafNode) error
	// Credential, if set, is the application's credential validation
	// (RFC 9420, Section 5.3.1). An error from it is wrapped so that it
	// matches [ErrCredential]. It may be called concurrently by
	// [Tree.Validate].
	Credential func(leaf LeafIndex, node *LeafNode) error
	// Workers bounds the goroutines [Tree.Validate] uses to verify leaf
	// signatures. Zero means runtime.GOMAXPROCS(0).
	Workers int
}

// checkLeaf runs the checks of RFC 9420, Section 7.3 that depend only on
// the leaf node itself and the group parameters. at is the leaf's position,
// which update and commit signatures cover.
func (t *Tree) checkLeaf(leaf *LeafNode, at LeafIndex, opts *ValidateOptions) error {
	if err := leaf.VerifySignature(t.suite, opts.GroupID, at); err != nil {
		return fmt.Errorf("%w: leaf %d: %w", ErrInvalidLeafNode, at, err)
	}
	if err := t.suite.ValidatePublicKey(leaf.EncryptionKey); err != nil {
		return fmt.Errorf("%w: leaf %d: encryption key: %w", ErrInvalidLeafNode, at, err)
	}
	if opts.Credential != nil {
		if err := opts.Credential(at, leaf); err != nil {
			return fmt.Errorf("%w: %w: leaf %d: %w", ErrInvalidLeafNode, ErrCredential, at, err)
		}
	}
	caps := &leaf.Capabilities
	if !caps.SupportsCredential(leaf.Credential.Type) {
		return both(ErrInvalidLeafNode, ErrCapabilities, "leaf %d does not list its own credential type %d", at, leaf.Credential.Type)
	}
	if v := opts.Version; v != 0 {
		if !slices.Contains(caps.Versions, v) {
			return both(ErrInvalidLeafNode, ErrCapabilities, "leaf %d does not list the group's protocol version %d", at, v)
		}
		if !slices.Contains(caps.CipherSuites, t.suite) {
			return both(ErrInvalidLeafNode, ErrCapabilities, "leaf %d does not list the group's cipher suite %v", at, t.suite)
		}
	}
	if r := opts.RequiredCapabilities; r != nil && !r.SatisfiedBy(caps) {
		return both(ErrInvalidLeafNode, ErrCapabilities, "leaf %d lacks a required capability", at)
	}
	if e, missing := caps.UnsupportedExtension(opts.GroupExtensions); missing {
		return both(ErrInvalidLeafNode, ErrCapabilities, "leaf %d does not support group extension %d", at, e)
	}
	if DuplicateExtension(leaf.Extensions) {
		return fmt.Errorf("%w: leaf %d repeats an extension type", ErrInvalidLeafNode, at)
	}
	// Every non-default extension of the leaf is listed in its own
	// capabilities (RFC 9420, Sections 7.2 and 7.3), in time linear in
	// both lists.
	if e, missing := caps.UnsupportedExtension(ExtensionTypes(leaf.Extensions)); missing {
		return both(ErrInvalidLeafNode, ErrCapabilities, "leaf %d uses extension %d it does not list", at, e)
	}
	if leaf.Source == SourceKeyPackage {
		lt := leaf.Lifetime
		if lt.NotAfter < lt.NotBefore {
			return both(ErrInvalidLeafNode, ErrLifetime, "leaf %d: not_after precedes not_before", at)
		}
		if opts.MaxLifetime > 0 && lt.NotAfter-lt.NotBefore > uint64(opts.MaxLifetime/time.Second) {
			return both(ErrInvalidLeafNode, ErrLifetime, "leaf %d: lifetime longer than allowed", at)
		}
		if opts.Now != nil && !lt.Contains(opts.Now()) {
			return both(ErrInvalidLeafNode, ErrLifetime, "leaf %d: outside its lifetime", at)
		}
	}
	return nil
}

// ValidateLeafNode checks a leaf node that is about to enter the tree (RFC
// 9420, Section 7.3): with source [SourceKeyPackage] for an Add, in which
// case at is ignored; with [SourceUpdate] or [SourceCommit] for the node
// that replaces leaf at. Besides the checks on the node itself (signature,
// credential, capabilities, extensions, lifetime) it checks, using the
// tree's indexes and without a scan, that its signature and encryption
// keys are not used elsewhere in the tree and that its credential type is
// supported by every other member and it supports theirs. When the node
// replaces a non-blank leaf it finally calls [ValidateOptions.Successor].
func (t *Tree) ValidateLeafNode(leaf *LeafNode, source LeafNodeSource, at LeafIndex, opts *ValidateOptions) error {
	if opts == nil {
		opts = &ValidateOptions{}
	}
	if leaf.Source != source {
		return fmt.Errorf("%w: leaf_node_source is %v, want %v", ErrInvalidLeafNode, leaf.Source, source)
	}
	var old *LeafNode
	replaced := int64(-1)
	if source != SourceKeyPackage {
		old = t.Leaf(at)
		replaced = int64(at)
		if old == nil && source == SourceUpdate {
			return fmt.Errorf("%w: leaf %d", ErrBlankLeaf, at)
		}
	}
	if err := t.checkLeaf(leaf, at, opts); err != nil {
		return err
	}
	if err := t.checkUnique(leaf, replaced); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidLeafNode, err)
	}
	if err := t.checkCredentialCoverage(leaf, old); err != nil {
		return err
	}
	if old != nil && opts.Successor != nil {
		if err := opts.Successor(at, old, leaf); err != nil {
			return fmt.Errorf("%w: %w: leaf %d: not a valid successor: %w", ErrInvalidLeafNode, ErrCredential, at, err)
		}
	}
	return nil
}

// checkCredentialCoverage checks the credential type rules of RFC 9420,
// Section 7.3 for leaf replacing old (nil for an addition) using the
// per-type counts of the index.
func (t *Tree) checkCredentialCoverage(leaf, old *LeafNode) error {
	others := t.idx.members
	supported := t.idx.credSupported.get(leaf.Credential.Type)
	if old != nil {
		others--
		if old.Capabilities.SupportsCredential(leaf.Credential.Type) {
			supported--
		}
	}
	if supported < others {
		return both(ErrInvalidLeafNode, ErrCapabilities, "credential type %d is not supported by every member", leaf.Credential.Type)
	}
	var set credSet
	supports := credLookup(leaf.Capabilities.Credentials, &set)
	for ct, n := range t.idx.credUsed {
		if old != nil && old.Credential.Type == ct {
			n--
		}
		if n > 0 && !supports(ct) {
			return both(ErrInvalidLeafNode, ErrCapabilities, "credential type %d used in the group is not supported", ct)
		}
	}
	return nil
}

// Validate checks the whole tree as a member joining the group must (RFC
// 9420, Section 12.4.3.1), except the comparison of its tree hash with the
// GroupInfo, which is the caller's:
//
//   - the unmerged_leaves of every parent are sorted, name non-blank leaves
//     below it, and are also listed by every non-blank parent in between;
//   - no two leaves share a signature key and no two nodes an encryption key;
//   - every leaf node is valid (Section 7.3): see [ValidateOptions]; leaf
//     signatures are verified on several goroutines;
//   - every leaf supports every credential type in use;
//   - every non-blank parent node is parent-hash valid (Section 7.9.2).
//
// Every error matches [ErrInvalidTree] and a more precise sentinel.
func (t *Tree) Validate(opts *ValidateOptions) error {
	if opts == nil {
		opts = &ValidateOptions{}
	}
	if t.nodes.width == 0 {
		return fmt.Errorf("%w: empty tree", ErrInvalidTree)
	}
	// The leaf checks, signatures above all, depend on nothing else in
	// the tree: they start at once on every worker, on a list of the
	// leaves taken first so that the workers never read the node store,
	// while this goroutine checks the structure and computes the tree
	// hashes (in parallel for big trees). The parent checks, which need
	// the hashes, follow.
	leaves := make([]NodeIndex, 0, t.idx.members)
	for i := 0; i < int(t.nodes.width); i += 2 {
		if t.nodes.at(NodeIndex(i)).leaf != nil {
			leaves = append(leaves, NodeIndex(i))
		}
	}
	leafNodes := make([]*LeafNode, len(leaves))
	for k, n := range leaves {
		leafNodes[k] = t.nodes.at(n).leaf
	}
	var stop atomic.Bool
	leafDone := make(chan error, 1)
	go func() {
		_, err := parallel(len(leaves), opts.Workers, &stop, func(k int) (bool, error) {
			return false, t.checkLeaf(leafNodes[k], leaves[k].Leaf(), opts)
		})
		leafDone <- err
	}()
	if err := t.checkStructure(); err != nil {
		stop.Store(true)
		<-leafDone
		return err
	}
	t.TreeHash()
	if err := <-leafDone; err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTree, err)
	}
	badParent, err := t.checkParents(opts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTree, err)
	}
	if badParent >= 0 {
		return both(ErrInvalidTree, ErrParentHashMismatch, "node %d", badParent)
	}
	return nil
}

// parallel runs f(0), ..., f(n-1) on up to workers goroutines (zero means
// GOMAXPROCS) and returns the first k, in order, for which f reported
// true, or -1, unless some f failed: then it returns the error of the
// lowest k that failed. It stops early after a failure or once stop is
// set.
func parallel(n, workers int, stop *atomic.Bool, f func(k int) (bool, error)) (int, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	var (
		mu       sync.Mutex
		firstErr = -1
		err0     error
	)
	flagged := make([]bool, n)
	var next atomic.Int64
	check := func() {
		const batch = 16
		for !stop.Load() {
			start := int(next.Add(batch)) - batch
			if start >= n {
				return
			}
			for k := start; k < min(start+batch, n); k++ {
				bad, err := f(k)
				flagged[k] = bad
				if err != nil {
					mu.Lock()
					if firstErr < 0 || k < firstErr {
						firstErr, err0 = k, err
					}
					mu.Unlock()
					stop.Store(true)
				}
			}
		}
	}
	if workers <= 1 {
		check()
	} else {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(check)
		}
		wg.Wait()
	}
	if err0 != nil {
		return -1, err0
	}
	for k, bad := range flagged {
		if bad {
			return k, nil
		}
	}
	return -1, nil
}

// checkParents validates parent keys and parent hashes on up to
// opts.Workers goroutines. It returns the error of the lowest node and the
// lowest parent node that is not parent-hash valid (or -1), which it
// checks as VerifyParentHashes does; every node hash must be cached.
func (t *Tree) checkParents(opts *ValidateOptions) (int, error) {
	var todo []NodeIndex
	for i := 1; i < int(t.nodes.width); i += 2 {
		if t.nodes.at(NodeIndex(i)).parent != nil {
			todo = append(todo, NodeIndex(i))
		}
	}
	var stop atomic.Bool
	k, err := parallel(len(todo), opts.Workers, &stop, func(k int) (bool, error) {
		n := todo[k]
		if e := t.suite.ValidatePublicKey(t.nodes.at(n).parent.EncryptionKey); e != nil {
			return false, fmt.Errorf("%w: parent node %d: encryption key: %w", ErrInvalidTree, n, e)
		}
		return !t.parentHashValid(n), nil
	})
	if err != nil || k < 0 {
		return -1, err
	}
	return int(todo[k]), nil
}

// checkStructure checks unmerged leaves, key uniqueness and credential
// type coverage.
func (t *Tree) checkStructure() error {
	n := t.LeafCount()
	for i := 1; i < int(t.nodes.width); i += 2 {
		p := t.nodes.at(NodeIndex(i)).parent
		if p == nil {
			continue
		}
		for j, u := range p.UnmergedLeaves {
			if j > 0 && u <= p.UnmergedLeaves[j-1] {
				return fmt.Errorf("%w: unmerged leaves of node %d are not strictly increasing", ErrInvalidTree, i)
			}
			if uint32(u) >= n || t.nodes.at(NodeIndex(u.Node())).leaf == nil || !inSubtree(u, NodeIndex(i)) {
				return fmt.Errorf("%w: node %d lists leaf %d as unmerged, which is blank or not below it", ErrInvalidTree, i, u)
			}
			for x := treemath.Parent(u.Node().tm(), n); x != treemath.NodeIndex(i); x = treemath.Parent(x, n) {
				if q := t.nodes.at(NodeIndex(x)).parent; q != nil {
					if _, found := slices.BinarySearch(q.UnmergedLeaves, u); !found {
						return fmt.Errorf("%w: leaf %d is unmerged at node %d but not at node %d below it", ErrInvalidTree, u, i, x)
					}
				}
			}
		}
	}
	for i := range int(t.nodes.width) {
		nd := t.nodes.at(NodeIndex(i))
		if nd.blank() {
			continue
		}
		k := nd.encryptionKey()
		if j, ok := t.idx.enc.get(string(k)); !ok {
			t.idx.enc.set(string(k), NodeIndex(i))
		} else if j != NodeIndex(i) {
			return both(ErrInvalidTree, ErrDuplicateKey, "nodes %d and %d share an encryption key", j, i)
		}
		if nd.leaf == nil {
			continue
		}
		sk := nd.leaf.SignatureKey
		if j, ok := t.idx.sig.get(string(sk)); !ok {
			t.idx.sig.set(string(sk), LeafIndex(i/2))
		} else if j != LeafIndex(i/2) {
			return both(ErrInvalidTree, ErrDuplicateKey, "leaves %d and %d share a signature key", j, i/2)
		}
	}
	// Every leaf supports every type in use exactly when each such type
	// is listed by every leaf: O(types) from the index's counts, with a
	// scan for the culprit only on failure.
	for ct, c := range t.idx.credUsed {
		if c > 0 && t.idx.credSupported.get(ct) < t.idx.members {
			for l, leaf := range t.Leaves() {
				if !leaf.Capabilities.SupportsCredential(ct) {
					return both(ErrInvalidTree, ErrCapabilities, "leaf %d does not support credential type %d used in the group", l, ct)
				}
			}
		}
	}
	return nil
}

// VerifyParentHashes checks that every non-blank parent node is parent-hash
// valid (RFC 9420, Section 7.9.2), top down: exactly one of its children's
// subtrees holds the node D that was set in the same UpdatePath, and D's
// parent_hash is the parent hash of this node. Errors match
// [ErrInvalidTree] and [ErrParentHashMismatch].
func (t *Tree) VerifyParentHashes() error {
	for i := 1; i < int(t.nodes.width); i += 2 {
		if t.nodes.at(NodeIndex(i)).parent == nil {
			continue
		}
		if !t.parentHashValid(NodeIndex(i)) {
			return both(ErrInvalidTree, ErrParentHashMismatch, "node %d", i)
		}
	}
	return nil
}

func (t *Tree) parentHashValid(p NodeIndex) bool {
	P := t.nodes.at(NodeIndex(p)).parent
	left := NodeIndex(treemath.Left(p.tm()))
	right := NodeIndex(treemath.Right(p.tm(), t.LeafCount()))
	matches := 0
	for _, cs := range [2][2]NodeIndex{{left, right}, {right, left}} {
		c, s := cs[0], cs[1]
		d, ok := t.chainChild(P, c)
		if !ok {
			continue
		}
		var dph []byte
		if nd := t.nodes.at(NodeIndex(d)); nd.leaf != nil {
			if nd.leaf.Source == SourceCommit {
				dph = nd.leaf.ParentHash
			}
		} else {
			dph = nd.parent.ParentHash
		}
		if len(dph) == 0 {
			continue
		}
		ph := t.parentHash(P.EncryptionKey, P.ParentHash, t.hashExcluding(s, P.UnmergedLeaves))
		if bytes.Equal(ph, dph) {
			matches++
		}
	}
	return matches == 1
}

// chainChild returns the node D below child c of parent P such that the
// resolution of c is D followed by exactly P's unmerged leaves under c: the
// only node that can carry P's parent hash (RFC 9420, Section 7.9.2).
func (t *Tree) chainChild(P *ParentNode, c NodeIndex) (NodeIndex, bool) {
	lo, hi := subtreeLeaves(c)
	a, _ := slices.BinarySearch(P.UnmergedLeaves, lo)
	b, _ := slices.BinarySearch(P.UnmergedLeaves, hi)
	um := P.UnmergedLeaves[a:b]
	res := t.resolve(c, nil)
	if len(res) != len(um)+1 {
		return 0, false
	}
	var d NodeIndex
	found := false
	matched := 0
	for _, r := range res {
		if r.IsLeaf() {
			if _, in := slices.BinarySearch(um, r.Leaf()); in {
				matched++
				continue
			}
		}
		if found {
			return 0, false
		}
		d, found = r, true
	}
	return d, found && matched == len(um)
}
