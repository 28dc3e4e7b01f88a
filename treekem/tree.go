package treekem

import (
	"fmt"
	"iter"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
)

// Tree is a ratchet tree: the public state of an MLS group's membership
// (RFC 9420, Sections 4 and 7). It always has a power-of-two number of
// leaves. Leaf and parent node values are shared, immutable, between a tree
// and its clones; operations replace them rather than modify them, so
// [Tree.Clone] is cheap and changing a clone never changes the original.
//
// A Tree caches node tree hashes and indexes its leaves by signature key,
// encryption key and identity. It is not safe for concurrent use, even for
// methods that only read, because reads fill the hash cache. Clone it to
// hand a copy to another goroutine.
type Tree struct {
	suite hpke.CipherSuite
	nodes nodeStore
	idx   index
	// fullBelow is a leaf index below which no leaf is blank, so that
	// finding the leftmost blank leaf rarely scans.
	fullBelow LeafIndex
}

type node struct {
	leaf   *LeafNode
	parent *ParentNode
	hash   []byte // cached tree hash; nil when not computed
}

func (n *node) blank() bool { return n.leaf == nil && n.parent == nil }

func (n *node) encryptionKey() []byte {
	switch {
	case n.leaf != nil:
		return n.leaf.EncryptionKey
	case n.parent != nil:
		return n.parent.EncryptionKey
	}
	return nil
}

// index holds lookups that would otherwise need a scan of the tree.
type index struct {
	sig   cowMap[string, LeafIndex]   // signature key -> leaf
	enc   cowMap[string, NodeIndex]   // encryption key of any node -> node
	ident cowMap[string, []LeafIndex] // identity -> leaves, sorted; slices never modified
	// credUsed counts the leaves using each credential type, credSupported
	// the leaves whose capabilities list it.
	credUsed      map[CredentialType]int
	credSupported credCounts
	members       int
	// lastPlus1 is one more than the highest non-blank node, zero if
	// there is none: nodes from there on are blank (see blankSubtree).
	lastPlus1 uint32
}

func (x *index) clone() index {
	return index{
		sig:           x.sig.clone(),
		enc:           x.enc.clone(),
		ident:         x.ident.clone(),
		credUsed:      cloneMap(x.credUsed),
		credSupported: x.credSupported.clone(),
		members:       x.members,
		lastPlus1:     x.lastPlus1,
	}
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// NewTree returns an empty tree for the cipher suite cs, which must be
// supported (see [hpke.CipherSuite.Supported]); the tree's methods panic
// otherwise. Add the first member with [Tree.AddLeaf].
func NewTree(cs hpke.CipherSuite) *Tree {
	return &Tree{suite: cs, idx: index{
		credUsed: map[CredentialType]int{},
	}}
}

// Suite returns the tree's cipher suite.
func (t *Tree) Suite() hpke.CipherSuite { return t.suite }

// LeafCount returns the number of leaves of the tree, blank ones included:
// zero or a power of two.
func (t *Tree) LeafCount() uint32 { return (t.nodes.width + 1) / 2 }

// Width returns the number of nodes of the tree, 2*LeafCount()-1.
func (t *Tree) Width() uint32 { return t.nodes.width }

// MemberCount returns the number of non-blank leaves.
func (t *Tree) MemberCount() int { return t.idx.members }

// Leaf returns the leaf node at l, or nil if it is blank or out of range.
// The caller must not modify it.
func (t *Tree) Leaf(l LeafIndex) *LeafNode {
	if !t.inRange(l) {
		return nil
	}
	return t.nodes.at(NodeIndex(l.Node())).leaf
}

// ParentNode returns the parent node at n, or nil if it is blank, a leaf or
// out of range. The caller must not modify it.
func (t *Tree) ParentNode(n NodeIndex) *ParentNode {
	if uint64(n) >= uint64(t.nodes.width) {
		return nil
	}
	return t.nodes.at(NodeIndex(n)).parent
}

// IsBlank reports whether node n is blank (or out of range).
func (t *Tree) IsBlank(n NodeIndex) bool {
	return uint64(n) >= uint64(t.nodes.width) || t.nodes.at(NodeIndex(n)).blank()
}

// EncryptionKey returns the HPKE public key of node n, or nil if it is
// blank or out of range.
func (t *Tree) EncryptionKey(n NodeIndex) []byte {
	if uint64(n) >= uint64(t.nodes.width) {
		return nil
	}
	return t.nodes.at(NodeIndex(n)).encryptionKey()
}

// Leaves iterates over the non-blank leaves in index order.
func (t *Tree) Leaves() iter.Seq2[LeafIndex, *LeafNode] {
	return func(yield func(LeafIndex, *LeafNode) bool) {
		for i := 0; i < int(t.nodes.width); i += 2 {
			if l := t.nodes.at(NodeIndex(i)).leaf; l != nil {
				if !yield(LeafIndex(i/2), l) {
					return
				}
			}
		}
	}
}

// Clone returns a copy of t that can be changed without changing t. It
// copies the node array and the recent changes of the indexes, not the
// nodes themselves. It only reads t, so several goroutines may clone the
// same tree at once as long as none of them changes it or computes hashes.
func (t *Tree) Clone() *Tree {
	return &Tree{suite: t.suite, nodes: t.nodes.clone(), idx: t.idx.clone(), fullBelow: t.fullBelow}
}

// FindSignatureKey returns the leaf whose signature key is key.
func (t *Tree) FindSignatureKey(key []byte) (LeafIndex, bool) {
	return t.idx.sig.get(string(key))
}

// FindEncryptionKey returns the node, leaf or parent, whose HPKE public
// key is key.
func (t *Tree) FindEncryptionKey(key []byte) (NodeIndex, bool) {
	return t.idx.enc.get(string(key))
}

// FindIdentity returns the leaves whose credential has the same type and
// identity as c: the same basic identity, the same end-entity certificate,
// or the same data for other types. The caller must not modify the
// returned slice.
func (t *Tree) FindIdentity(c *Credential) []LeafIndex {
	v, _ := t.idx.ident.get(c.identityKey())
	return v
}

// LeftmostBlankLeaf returns the leftmost blank leaf, or LeafCount() when
// every leaf is taken (an addition then extends the tree).
func (t *Tree) LeftmostBlankLeaf() LeafIndex {
	for i := 2 * int(t.fullBelow); i < int(t.nodes.width); i += 2 {
		if t.nodes.at(NodeIndex(i)).leaf == nil {
			return LeafIndex(i / 2)
		}
	}
	return LeafIndex(t.LeafCount())
}

// DirectPath returns the direct path of node n: its parent up to the root
// (RFC 9420, Section 4.1.2).
func (t *Tree) DirectPath(n NodeIndex) []NodeIndex {
	if uint64(n) >= uint64(t.nodes.width) {
		return nil
	}
	return fromTM(treemath.DirectPath(n.tm(), t.LeafCount()))
}

// Copath returns the copath of node n (RFC 9420, Section 4.1.2).
func (t *Tree) Copath(n NodeIndex) []NodeIndex {
	if uint64(n) >= uint64(t.nodes.width) {
		return nil
	}
	return fromTM(treemath.Copath(n.tm(), t.LeafCount()))
}

func fromTM(p []treemath.NodeIndex) []NodeIndex {
	out := make([]NodeIndex, len(p))
	for i, x := range p {
		out[i] = NodeIndex(x)
	}
	return out
}

// Resolution returns the resolution of node n (RFC 9420, Section 4.1.1):
// the non-blank nodes that together cover every non-blank descendant of n,
// unmerged leaves included, left to right.
func (t *Tree) Resolution(n NodeIndex) []NodeIndex {
	if uint64(n) >= uint64(t.nodes.width) {
		return nil
	}
	return t.resolve(n, nil)
}

func (t *Tree) resolve(n NodeIndex, out []NodeIndex) []NodeIndex {
	if t.blankSubtree(n) {
		return out
	}
	nd := t.nodes.at(NodeIndex(n))
	if n.IsLeaf() {
		if nd.leaf != nil {
			out = append(out, n)
		}
		return out
	}
	if nd.parent != nil {
		out = append(out, n)
		for _, u := range nd.parent.UnmergedLeaves {
			out = append(out, u.Node())
		}
		return out
	}
	out = t.resolve(NodeIndex(treemath.Left(n.tm())), out)
	return t.resolve(NodeIndex(treemath.Right(n.tm(), t.LeafCount())), out)
}

// hasNonBlank reports whether the resolution of n is non-empty, without
// building it.
func (t *Tree) hasNonBlank(n NodeIndex) bool {
	if t.blankSubtree(n) {
		return false
	}
	nd := t.nodes.at(NodeIndex(n))
	if !nd.blank() {
		return true
	}
	if n.IsLeaf() {
		return false
	}
	return t.hasNonBlank(NodeIndex(treemath.Left(n.tm()))) ||
		t.hasNonBlank(NodeIndex(treemath.Right(n.tm(), t.LeafCount())))
}

// FilteredDirectPath returns the filtered direct path of leaf l (RFC 9420,
// Section 4.1.2): its direct path without the nodes whose copath child has
// an empty resolution. It returns nil if l is out of range.
func (t *Tree) FilteredDirectPath(l LeafIndex) []NodeIndex {
	if !t.inRange(l) {
		return nil
	}
	path, _ := t.filteredDirectPath(l)
	return path
}

// inRange reports whether l is a leaf of the tree, blank or not.
func (t *Tree) inRange(l LeafIndex) bool { return uint64(l) < uint64(t.LeafCount()) }

// HasLeaf reports whether l is a leaf position of the tree, blank or not:
// l < [Tree.LeafCount]. Check it on every leaf index read from the wire
// before using it.
func (t *Tree) HasLeaf(l LeafIndex) bool { return t.inRange(l) }

// filteredDirectPath returns the filtered direct path of l and, for each of
// its nodes, the child on l's copath. l must be in range.
func (t *Tree) filteredDirectPath(l LeafIndex) (path, copath []NodeIndex) {
	n := t.LeafCount()
	x := l.Node().tm()
	root := treemath.Root(n)
	for x != root {
		p := treemath.Parent(x, n)
		s := treemath.Sibling(x, n)
		if t.hasNonBlank(NodeIndex(s)) {
			path = append(path, NodeIndex(p))
			copath = append(copath, NodeIndex(s))
		}
		x = p
	}
	return path, copath
}

// subtreeLeaves returns the range [lo, hi) of leaves under node n.
func subtreeLeaves(n NodeIndex) (lo, hi LeafIndex) {
	k := treemath.Level(n.tm())
	first := uint64(n) - (uint64(1)<<k - 1)
	return LeafIndex(first / 2), LeafIndex(first/2 + uint64(1)<<k)
}

// inSubtree reports whether leaf l is under node n (or is n).
func inSubtree(l LeafIndex, n NodeIndex) bool {
	lo, hi := subtreeLeaves(n)
	return l >= lo && l < hi
}

// --- mutation -------------------------------------------------------------

// invalidate drops the cached hashes of n and its ancestors.
func (t *Tree) invalidate(n NodeIndex) {
	w := t.LeafCount()
	x := n.tm()
	root := treemath.Root(w)
	for {
		t.nodes.mut(NodeIndex(x)).hash = nil
		if x == root {
			return
		}
		x = treemath.Parent(x, w)
	}
}

func (t *Tree) unindexNode(n NodeIndex) {
	t.unindexLast(n)
	nd := t.nodes.at(NodeIndex(n))
	if k := nd.encryptionKey(); k != nil {
		if j, ok := t.idx.enc.get(string(k)); ok && j == n {
			t.idx.enc.del(string(k))
		}
	}
	l := nd.leaf
	if l == nil {
		return
	}
	li := n.Leaf()
	if j, ok := t.idx.sig.get(string(l.SignatureKey)); ok && j == li {
		t.idx.sig.del(string(l.SignatureKey))
	}
	ik := l.Credential.identityKey()
	if v, ok := t.idx.ident.get(ik); ok {
		if i := slices.Index(v, li); i >= 0 {
			if len(v) == 1 {
				t.idx.ident.del(ik)
			} else {
				t.idx.ident.set(ik, slices.Delete(slices.Clone(v), i, i+1))
			}
		}
	}
	t.idx.members--
	decr(t.idx.credUsed, l.Credential.Type)
	forEachDistinct(l.Capabilities.Credentials, func(c CredentialType) { t.idx.credSupported.add(c, -1) })
}

func (t *Tree) indexNode(n NodeIndex) {
	nd := t.nodes.at(NodeIndex(n))
	if !nd.blank() {
		t.idx.lastPlus1 = max(t.idx.lastPlus1, uint32(n)+1)
	}
	if k := nd.encryptionKey(); k != nil {
		if _, ok := t.idx.enc.get(string(k)); !ok {
			t.idx.enc.set(string(k), n)
		}
	}
	l := nd.leaf
	if l == nil {
		return
	}
	li := n.Leaf()
	if _, ok := t.idx.sig.get(string(l.SignatureKey)); !ok {
		t.idx.sig.set(string(l.SignatureKey), li)
	}
	ik := l.Credential.identityKey()
	v, _ := t.idx.ident.get(ik)
	i, _ := slices.BinarySearch(v, li)
	t.idx.ident.set(ik, slices.Insert(slices.Clone(v), i, li))
	t.idx.members++
	t.idx.credUsed[l.Credential.Type]++
	forEachDistinct(l.Capabilities.Credentials, func(c CredentialType) { t.idx.credSupported.add(c, 1) })
}

func decr[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// setNode replaces node n, keeping the indexes and hash cache right.
func (t *Tree) setNode(n NodeIndex, leaf *LeafNode, parent *ParentNode) {
	t.unindexNode(n)
	nd := t.nodes.mut(n)
	nd.leaf, nd.parent = leaf, parent
	if n.IsLeaf() && leaf == nil {
		t.fullBelow = min(t.fullBelow, n.Leaf())
	}
	t.indexNode(n)
	t.invalidate(n)
}

func (t *Tree) setLeaf(l LeafIndex, leaf *LeafNode)       { t.setNode(l.Node(), leaf, nil) }
func (t *Tree) setParent(n NodeIndex, parent *ParentNode) { t.setNode(n, nil, parent) }

// blankDirectPath blanks every parent on the direct path of leaf l.
func (t *Tree) blankDirectPath(l LeafIndex) {
	for _, p := range treemath.DirectPath(l.Node().tm(), t.LeafCount()) {
		if !t.nodes.at(NodeIndex(p)).blank() {
			t.setParent(NodeIndex(p), nil)
		}
	}
}

// extend doubles the number of leaves, adding a blank root and a blank
// right subtree (RFC 9420, Section 7.7).
func (t *Tree) extend() {
	t.nodes.resize(2*t.nodes.width + 1)
}

// truncate removes right subtrees that hold no non-blank leaf (RFC 9420,
// Sections 7.7 and 12.1.3).
func (t *Tree) truncate() {
	last := -1
	for i := int(t.nodes.width) - 1; i >= 0; i -= 2 {
		if t.nodes.at(NodeIndex(i)).leaf != nil {
			last = i / 2
			break
		}
	}
	n := t.LeafCount()
	for n > 1 && uint32(last) < n/2 {
		n /= 2
	}
	if last < 0 {
		n = min(n, 1)
	}
	w := int(treemath.NodeWidth(n))
	for i := w; i < int(t.nodes.width); i++ {
		t.unindexNode(NodeIndex(i))
	}
	t.nodes.resize(uint32(w))
}

// checkUnique returns an error matching [ErrDuplicateKey] if leaf's
// signature key is used by another leaf than replaced (replaced < 0: no
// leaf is being replaced) or its encryption key by any node.
func (t *Tree) checkUnique(leaf *LeafNode, replaced int64) error {
	if j, ok := t.idx.sig.get(string(leaf.SignatureKey)); ok && int64(j) != replaced {
		return fmt.Errorf("%w: signature key already used by leaf %d", ErrDuplicateKey, j)
	}
	if j, ok := t.idx.enc.get(string(leaf.EncryptionKey)); ok {
		return fmt.Errorf("%w: encryption key already used by node %d", ErrDuplicateKey, j)
	}
	return nil
}

func checkSource(leaf *LeafNode) error {
	if leaf == nil {
		return fmt.Errorf("%w: nil leaf", ErrInvalidLeafNode)
	}
	if leaf.Source < SourceKeyPackage || leaf.Source > SourceCommit {
		return fmt.Errorf("%w: leaf_node_source %d", ErrInvalidLeafNode, leaf.Source)
	}
	return nil
}

// AddLeaf puts leaf in the leftmost blank leaf, extending the tree if every
// leaf is taken, and adds it to the unmerged leaves of every non-blank
// parent on its direct path (RFC 9420, Sections 7.7 and 12.1.1). It
// returns [ErrDuplicateKey] if the leaf's signature or encryption key is
// already in the tree, and otherwise only checks that the leaf is non-nil
// with a valid source: validate it with [Tree.ValidateLeafNode] first.
// leaf must not be modified afterwards.
func (t *Tree) AddLeaf(leaf *LeafNode) (LeafIndex, error) {
	if err := checkSource(leaf); err != nil {
		return 0, err
	}
	if err := t.checkUnique(leaf, -1); err != nil {
		return 0, err
	}
	l := t.LeftmostBlankLeaf()
	if uint32(l) >= t.LeafCount() {
		if t.LeafCount() >= 1<<30 {
			return 0, fmt.Errorf("%w: tree is full", ErrInvalidTree)
		}
		t.extend()
	}
	for _, p := range treemath.DirectPath(l.Node().tm(), t.LeafCount()) {
		old := t.nodes.at(NodeIndex(p)).parent
		if old == nil {
			continue
		}
		np := *old
		i, found := slices.BinarySearch(np.UnmergedLeaves, l)
		if !found {
			np.UnmergedLeaves = slices.Insert(slices.Clone(np.UnmergedLeaves), i, l)
		}
		t.setParent(NodeIndex(p), &np)
	}
	t.setLeaf(l, leaf)
	t.fullBelow = l + 1
	return l, nil
}

// UpdateLeaf replaces the leaf at l with leaf and blanks its direct path
// (RFC 9420, Section 12.1.2). It returns [ErrBlankLeaf] if l is blank and
// [ErrDuplicateKey] if leaf reuses the encryption key of any node or the
// signature key of another leaf. leaf must not be modified afterwards.
func (t *Tree) UpdateLeaf(l LeafIndex, leaf *LeafNode) error {
	if err := checkSource(leaf); err != nil {
		return err
	}
	if t.Leaf(l) == nil {
		return fmt.Errorf("%w: leaf %d", ErrBlankLeaf, l)
	}
	if err := t.checkUnique(leaf, int64(l)); err != nil {
		return err
	}
	t.setLeaf(l, leaf)
	t.blankDirectPath(l)
	return nil
}

// RemoveLeaf blanks the leaf at l and its direct path, then truncates the
// tree (RFC 9420, Section 12.1.3). It returns [ErrBlankLeaf] if l is blank.
func (t *Tree) RemoveLeaf(l LeafIndex) error {
	if t.Leaf(l) == nil {
		return fmt.Errorf("%w: leaf %d", ErrBlankLeaf, l)
	}
	t.setLeaf(l, nil)
	t.blankDirectPath(l)
	t.truncate()
	return nil
}

// --- encoding -------------------------------------------------------------

// Marshal adds the tree as `optional<Node> ratchet_tree<V>` to b (RFC 9420,
// Section 12.4.3.3), without the blank nodes after the last non-blank one.
func (t *Tree) Marshal(b *cryptobyte.Builder) {
	end := int(t.nodes.width)
	for end > 0 && t.nodes.at(NodeIndex(end-1)).blank() {
		end--
	}
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for i := range end {
			nd := t.nodes.at(NodeIndex(i))
			switch {
			case nd.leaf != nil:
				b.AddUint8(1)
				b.AddUint8(uint8(NodeTypeLeaf))
				nd.leaf.Marshal(b)
			case nd.parent != nil:
				b.AddUint8(1)
				b.AddUint8(uint8(NodeTypeParent))
				nd.parent.Marshal(b)
			default:
				b.AddUint8(0)
			}
		}
	})
}

// Bytes returns the encoding written by [Tree.Marshal]. Like
// [LeafNode.Bytes] it panics only on a field too long to encode.
func (t *Tree) Bytes() []byte { return wire.MustMarshal(t.Marshal) }

// ParseTree decodes a whole `optional<Node> ratchet_tree<V>` (RFC 9420,
// Section 12.4.3.3) for the cipher suite cs and extends it with blank
// nodes to a full tree. It checks the structure only: that the tree is not
// empty, that it has an odd number of nodes (an array of even length is
// malformed, Section 12.4.3.3), that its last node is not blank, and that
// leaves and parents sit at even and odd positions. Errors on the
// structure match [ErrInvalidTree]; an even-length array also matches
// [ErrMalformed]. Validate the contents with [Tree.Validate].
func ParseTree(cs hpke.CipherSuite, data []byte) (*Tree, error) {
	// The nodes' byte strings point into one private copy of the input
	// rather than into an allocation each.
	return ParseTreeInPlace(cs, append(make([]byte, 0, len(data)), data...))
}

// ParseTreeInPlace is [ParseTree] without the copy of data: the tree's
// nodes point into it, so the caller must never modify data afterwards
// (use it on a buffer of its own, such as a decrypted GroupInfo). Most
// users won't need it.
func ParseTreeInPlace(cs hpke.CipherSuite, data []byte) (*Tree, error) {
	if !cs.Supported() {
		return nil, fmt.Errorf("treekem: %w: %v", hpke.ErrUnsupportedCipherSuite, cs)
	}
	t := NewTree(cs)
	if err := wire.Parse(data, t.unmarshalNodes); err != nil {
		return nil, fmt.Errorf("%w: ratchet tree: %w", ErrMalformed, err)
	}
	if t.nodes.width == 0 || t.nodes.at(NodeIndex(t.nodes.width-1)).blank() {
		return nil, fmt.Errorf("%w: ratchet tree is empty or ends with a blank node", ErrInvalidTree)
	}
	if t.nodes.width%2 == 0 {
		return nil, both(ErrInvalidTree, ErrMalformed, "ratchet tree has an even number of nodes (%d)", t.nodes.width)
	}
	for i := range int(t.nodes.width) {
		nd := t.nodes.at(NodeIndex(i))
		if (nd.leaf != nil && i%2 != 0) || (nd.parent != nil && i%2 != 1) {
			return nil, fmt.Errorf("%w: node %d has the wrong type for its position", ErrInvalidTree, i)
		}
	}
	leaves := uint32(1)
	for uint64(treemath.NodeWidth(leaves)) < uint64(t.nodes.width) {
		leaves *= 2
	}
	t.nodes.resize(treemath.NodeWidth(leaves))
	t.indexAll()
	return t, nil
}

// push appends a node. A blank one only widens the store.
func (s *nodeStore) push(nd node) {
	n := s.width
	s.resize(n + 1)
	if !nd.blank() {
		*s.mut(NodeIndex(n)) = nd
	}
}

// unmarshalNodes reads the node vector into t.nodes.
func (t *Tree) unmarshalNodes(s *cryptobyte.String) bool {
	var body cryptobyte.String
	if !wire.ReadVarintPrefixed(s, &body) {
		return false
	}
	// Each node takes at least one byte, and the tree at most 2^31 nodes.
	if len(body) >= 1<<31 {
		return false
	}
	for !body.Empty() {
		var present bool
		if !wire.ReadOptional(&body, &present) {
			return false
		}
		if !present {
			t.nodes.push(node{})
			continue
		}
		var typ uint8
		if !body.ReadUint8(&typ) {
			return false
		}
		switch NodeType(typ) {
		case NodeTypeLeaf:
			l := new(LeafNode)
			if !l.unmarshal(&body, inPlace) {
				return false
			}
			t.nodes.push(node{leaf: l})
		case NodeTypeParent:
			p := new(ParentNode)
			if !p.unmarshal(&body, inPlace) {
				return false
			}
			t.nodes.push(node{parent: p})
		default:
			return false
		}
	}
	return true
}
