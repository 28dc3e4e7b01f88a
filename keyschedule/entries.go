package keyschedule

import (
	"fmt"
	"maps"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
)

// A secret tree is persisted entry by entry, so that saving it after one
// message writes only what that message changed: O(log n) entries the
// first time a sender is heard from in an epoch (the node secrets of its
// path), one entry afterwards (its ratchets).

// SecretTreeEntry is one entry of the persistent form of a [SecretTree]:
// the secret of a node not yet derived into its children, or the ratchets
// of a started leaf, under the node's index. Most users won't need it.
type SecretTreeEntry struct {
	// Node is the node index (a leaf's is twice its leaf index).
	Node uint32
	// Value is the entry's encoding, or nil if the entry no longer exists.
	// It must be kept secret.
	Value []byte
}

// Entry value tags.
const (
	entryNodeSecret = 1
	entryRatchets   = 2
)

// TrackChanges makes the tree record which entries change, for
// [SecretTree.Changes]. Until it is called nothing is recorded.
func (t *SecretTree) TrackChanges() {
	if t.changed == nil {
		t.changed = make(map[treemath.NodeIndex]struct{})
	}
}

func (t *SecretTree) markChanged(xs ...treemath.NodeIndex) {
	if t.changed == nil {
		return
	}
	for _, x := range xs {
		t.changed[x] = struct{}{}
	}
}

// Changes returns the entries that changed since [SecretTree.TrackChanges]
// or the last [SecretTree.ClearChanges], ordered by node index, with a nil
// Value for the entries that no longer exist. The caller owns the values
// and should erase them once stored.
func (t *SecretTree) Changes() []SecretTreeEntry {
	out := make([]SecretTreeEntry, 0, len(t.changed))
	for _, x := range slices.Sorted(maps.Keys(t.changed)) {
		out = append(out, SecretTreeEntry{Node: uint32(x), Value: t.entry(x)})
	}
	return out
}

// ClearChanges forgets the changes recorded so far, once they are stored.
func (t *SecretTree) ClearChanges() { clear(t.changed) }

// Entries returns every entry of the tree, ordered by node index. The
// caller owns the values and should erase them once stored.
func (t *SecretTree) Entries() []SecretTreeEntry {
	xs := slices.Collect(maps.Keys(t.nodes))
	for l := range t.senders {
		xs = append(xs, treemath.LeafIndex(l).Node())
	}
	slices.Sort(xs)
	out := make([]SecretTreeEntry, 0, len(xs))
	for _, x := range xs {
		out = append(out, SecretTreeEntry{Node: uint32(x), Value: t.entry(x)})
	}
	return out
}

// Limits returns the tree's [Config] limits, in effect since it was made.
func (t *SecretTree) Limits() (maxForwardDistance, outOfOrderTolerance uint32) {
	return t.maxForward, t.tolerance
}

// entry returns the encoding of the entry at node x, or nil:
//
//	struct {
//	    uint8 type;  // 1: node secret, 2: ratchets
//	    select (type) {
//	        case 1: opaque secret<V>;
//	        case 2: Ratchet handshake; Ratchet application;
//	    };
//	} SecretTreeEntry;
//
// with Ratchet as in [SecretTree.Bytes].
func (t *SecretTree) entry(x treemath.NodeIndex) []byte {
	if s, ok := t.nodes[x]; ok {
		return wire.MustMarshal(func(b *cryptobyte.Builder) {
			b.AddUint8(entryNodeSecret)
			wire.AddVarintBytes(b, s)
		})
	}
	if x%2 == 0 {
		if s, ok := t.senders[uint32(x/2)]; ok {
			return wire.MustMarshal(func(b *cryptobyte.Builder) {
				b.AddUint8(entryRatchets)
				s.handshake.marshal(b)
				s.application.marshal(b)
			})
		}
	}
	return nil
}

// RestoreSecretTree restores a tree of leafCount leaves with the given
// limits (see [SecretTree.Limits]) from its entries (see
// [SecretTree.Entries] and [SecretTree.Changes]), in any order. It checks
// them as [ParseSecretTree] does. The tree does not track changes until
// [SecretTree.TrackChanges]. Errors match [ErrMalformed] or
// [hpke.ErrUnsupportedCipherSuite].
func RestoreSecretTree(cs hpke.CipherSuite, leafCount, maxForwardDistance, outOfOrderTolerance uint32, entries []SecretTreeEntry) (*SecretTree, error) {
	if !cs.Supported() {
		return nil, fmt.Errorf("keyschedule: secret tree entries: %w", hpke.ErrUnsupportedCipherSuite)
	}
	t := &SecretTree{
		suite:      cs,
		leafCount:  leafCount,
		maxForward: maxForwardDistance,
		tolerance:  outOfOrderTolerance,
		nodes:      make(map[treemath.NodeIndex][]byte),
		senders:    make(map[uint32]*senderRatchets),
	}
	err := t.restore(entries)
	if err == nil {
		err = t.checkCoverage()
	}
	if err != nil {
		t.Erase()
		return nil, fmt.Errorf("%w: secret tree entries: %w", ErrMalformed, err)
	}
	return t, nil
}

func (t *SecretTree) restore(entries []SecretTreeEntry) error {
	if t.leafCount == 0 || t.leafCount > 1<<31 {
		return fmt.Errorf("leaf count %d", t.leafCount)
	}
	width := treemath.NodeWidth(t.leafCount)
	for _, e := range entries {
		x := treemath.NodeIndex(e.Node)
		if e.Node >= width {
			return fmt.Errorf("node %d beyond the tree", e.Node)
		}
		_, dupNode := t.nodes[x]
		_, dupLeaf := t.senders[e.Node/2]
		if dupNode || (x%2 == 0 && dupLeaf) {
			return fmt.Errorf("node %d twice", e.Node)
		}
		s := cryptobyte.String(e.Value)
		var typ uint8
		if !s.ReadUint8(&typ) {
			return fmt.Errorf("node %d: empty entry", e.Node)
		}
		switch typ {
		case entryNodeSecret:
			var secret []byte
			if !wire.ReadVarintBytes(&s, &secret) || len(secret) != t.suite.HashSize() || !s.Empty() {
				return fmt.Errorf("node %d: malformed secret", e.Node)
			}
			t.nodes[x] = secret
		case entryRatchets:
			sr := new(senderRatchets)
			if x%2 != 0 || !sr.handshake.unmarshal(&s, t) || !sr.application.unmarshal(&s, t) || !s.Empty() {
				sr.handshake.erase()
				sr.application.erase()
				return fmt.Errorf("node %d: malformed ratchets", e.Node)
			}
			t.senders[e.Node/2] = sr
		default:
			return fmt.Errorf("node %d: entry type %d", e.Node, typ)
		}
	}
	return nil
}
