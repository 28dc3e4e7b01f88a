package mls

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// This file implements the persistent form of a [Group] as records (see
// [GroupStore]), split by how often each part changes:
//
//	key                       value                         written
//	"h"                       GroupHead                     when the epoch, the kept
//	                                                        epochs or the own keys change
//	"e" epoch_id              EpochRecord                   once per epoch
//	"k" epoch_id              EpochKeys                     once per epoch, again
//	                                                        (smaller) when it becomes past
//	"c" uint32 index hash16   nodes of one tree chunk       when a commit changes the chunk
//	                          (StoredChunk, chunkcodec.go)
//	"s" epoch_id uint32 node  keyschedule.SecretTreeEntry   when a message changes it
//	"p" proposal_ref          CachedProposal                when a proposal is received
//	"P"                       PendingCommitRecord           before sending a commit
//	"a" key                   the application's own         with the step they belong to
//
// epoch_id is the epoch (uint64) and the first 8 bytes of the SHA-256 of
// the epoch's GroupContext, so that two different epochs of the same
// number (our discarded commit and the one the group adopted) never share
// records. The ratchet tree is stored in chunks of treeChunkNodes nodes,
// each addressed by its index and a hash of its contents; an epoch's
// record lists its chunks. Past epochs share unchanged chunks with the
// current one, so a commit writes the O(log n) chunks its path changed and
// keeping past epochs costs little more than those chunks.

// treeChunkNodes is the number of tree nodes per stored chunk.
const treeChunkNodes = 32

// headVersion is the version of the head record format (the whole-state
// format of [Group.MarshalState] is version 1).
const headVersion = 2

var headMagic = [4]byte{'M', 'L', 'S', 'h'}

const (
	keyHead     = 'h'
	keyEpoch    = 'e'
	keyKeys     = 'k'
	keyChunk    = 'c'
	keySecret   = 's'
	keyProposal = 'p'
	keyPending  = 'P'
	keyApp      = 'a'
)

const chunkHashSize = 16

// epochID names the records of one epoch.
type epochID [16]byte

func newEpochID(epoch uint64, ctxBytes []byte) epochID {
	var id epochID
	binary.BigEndian.PutUint64(id[:8], epoch)
	h := sha256.Sum256(ctxBytes)
	copy(id[8:], h[:8])
	return id
}

func (id epochID) epoch() uint64 { return binary.BigEndian.Uint64(id[:8]) }

// chunkRef addresses one stored tree chunk: its index and content hash.
type chunkRef struct {
	index uint32
	hash  [chunkHashSize]byte
}

func (r chunkRef) key() []byte {
	k := make([]byte, 0, 1+4+chunkHashSize)
	k = append(k, keyChunk)
	k = binary.BigEndian.AppendUint32(k, r.index)
	return append(k, r.hash[:]...)
}

func epochKey(kind byte, id epochID) []byte { return append([]byte{kind}, id[:]...) }

func secretKey(id epochID, node uint32) []byte {
	k := make([]byte, 0, 1+len(id)+4)
	k = append(k, keySecret)
	k = append(k, id[:]...)
	return binary.BigEndian.AppendUint32(k, node)
}

// AppRecordKey returns the key under which an application record with the
// given key is stored among a group's records (see [SaveOptions.App]).
func AppRecordKey(key []byte) []byte { return append([]byte{keyApp}, key...) }

// epochInfo is what the persistence layer knows of one epoch held in
// memory: its records' ID, its tree's chunks, and, if the tree has not been
// decoded, the raw chunks.
type epochInfo struct {
	id     epochID
	chunks []chunkRef // nil until computed
	lazy   *lazyTree  // non-nil while the tree is not decoded
}

// storedEpoch is what is stored of one epoch.
type storedEpoch struct {
	past    bool     // keys record in the past form
	keysSum [32]byte // SHA-256 of the keys record in the current form
	chunks  []chunkRef
	secrets map[uint32]struct{}
	fr      *framer
}

// persistence tracks what of a Group is in its store, so that a save
// writes only what changed. The zero value means nothing is stored.
type persistence struct {
	revision  uint64
	head      [32]byte
	epochs    map[epochID]*storedEpoch
	chunks    map[chunkRef]int // stored chunks, with the number of stored epochs using them
	proposals map[string]struct{}
	// pending is the stored pending commit, if any.
	pending *storedPending
	// lastTree is the tree of the newest stored epoch held decoded, with
	// its chunks: new epochs share the chunks they did not change.
	lastTree *treekem.Tree
	lastRefs []chunkRef
	// info holds what is known of the epochs in memory, by framer.
	info map[*framer]*epochInfo
	// recovered is the pending commit found by OpenGroup.
	recovered *PendingCommit
	broken    error
}

type storedPending struct {
	id        epochID
	fromEpoch uint64
	st        *epochState // nil if stale (the group moved on)
}

func (g *Group) persist() *persistence {
	if g.store == nil {
		g.store = &persistence{}
	}
	p := g.store
	if p.info == nil {
		p.info = make(map[*framer]*epochInfo)
		p.epochs = make(map[epochID]*storedEpoch)
		p.chunks = make(map[chunkRef]int)
		p.proposals = make(map[string]struct{})
	}
	return p
}

// epochInfo returns the info of the epoch of fr, whose GroupContext is
// ctxBytes.
func (p *persistence) epochInfo(fr *framer) *epochInfo {
	if in, ok := p.info[fr]; ok {
		return in
	}
	in := &epochInfo{id: newEpochID(fr.epoch, fr.groupContext)}
	p.info[fr] = in
	return in
}

// needTree decodes the current epoch's ratchet tree if it was loaded
// lazily, and checks it against the GroupContext's tree hash and the
// member's private keys. Every operation that needs more of the tree than
// a sender's leaf calls it first.
func (g *Group) needTree() error {
	if g.state == nil || g.state.tree != nil {
		return nil
	}
	p := g.persist()
	if p.broken != nil {
		return p.broken
	}
	st := g.state
	in := p.info[st.framer]
	if in == nil || in.lazy == nil {
		return fmt.Errorf("%w: ratchet tree missing", ErrInvalidState)
	}
	tree, err := in.lazy.materialize()
	if err == nil && !bytes.Equal(tree.TreeHash(), st.ctx.TreeHash) {
		err = errors.New("ratchet tree does not match the tree hash")
	}
	if err == nil {
		err = st.priv.Verify(tree)
	}
	if err != nil {
		p.broken = fmt.Errorf("%w: ratchet tree: %w", ErrInvalidState, err)
		return p.broken
	}
	st.tree = tree
	in.lazy = nil
	if p.lastTree == nil {
		if se := p.epochs[in.id]; se != nil {
			p.lastTree, p.lastRefs = tree, se.chunks
		}
	}
	return nil
}

// pastTree returns the ratchet tree of a past epoch, decoding it if needed.
func (g *Group) pastTree(pe *pastEpoch) (*treekem.Tree, error) {
	if pe.tree != nil {
		return pe.tree, nil
	}
	in := g.persist().info[pe.framer]
	if in == nil || in.lazy == nil {
		return nil, fmt.Errorf("%w: past ratchet tree missing", ErrInvalidState)
	}
	t, err := in.lazy.materialize()
	if err != nil {
		return nil, fmt.Errorf("%w: past ratchet tree: %w", ErrInvalidState, err)
	}
	pe.tree = t
	in.lazy = nil
	return t, nil
}

// senderLeaf returns the leaf of a member of the epoch of fr, whose tree
// is t if decoded, without decoding the whole tree: decrypting one message
// after a cold start decodes one chunk.
func (g *Group) senderLeaf(t *treekem.Tree, fr *framer, l LeafIndex) *LeafNode {
	if t != nil {
		return t.Leaf(l)
	}
	if g.store == nil {
		return nil
	}
	in := g.store.info[fr]
	if in == nil || in.lazy == nil {
		return nil
	}
	leaf, err := in.lazy.leaf(l)
	if err != nil {
		return nil
	}
	return leaf
}

// senderLeafCount returns the number of leaves of the tree that
// senderLeaf reads: t, or the lazily decoded tree of the epoch of fr.
func (g *Group) senderLeafCount(t *treekem.Tree, fr *framer) uint32 {
	if t != nil {
		return t.LeafCount()
	}
	if g.store == nil {
		return 0
	}
	if in := g.store.info[fr]; in != nil && in.lazy != nil {
		return in.lazy.leafCount
	}
	return 0
}

// lazyTree is a ratchet tree as stored chunks, decoded on demand.
type lazyTree struct {
	cs        CipherSuite
	leafCount uint32
	chunks    [][]byte // stored chunks (see packChunk), in order
	leaves    map[LeafIndex]*LeafNode
}

// leaf decodes the leaf l from its chunk.
func (t *lazyTree) leaf(l LeafIndex) (*LeafNode, error) {
	if uint64(l) >= uint64(t.leafCount) {
		return nil, errors.New("leaf beyond the tree")
	}
	n := uint64(l) * 2
	c := n / treeChunkNodes
	if c >= uint64(len(t.chunks)) {
		return nil, nil // beyond the last non-blank node
	}
	if leaf, ok := t.leaves[l]; ok {
		return leaf, nil
	}
	raw, err := unpackChunk(t.chunks[c])
	if err != nil {
		return nil, err
	}
	s := cryptobyte.String(raw)
	for i := c * treeChunkNodes; i < n; i++ {
		if !skipNode(&s) {
			return nil, wire.ErrMalformed
		}
	}
	if s.Empty() {
		return nil, nil
	}
	var present bool
	if !wire.ReadOptional(&s, &present) {
		return nil, wire.ErrMalformed
	}
	if !present {
		return nil, nil
	}
	var typ uint8
	leaf := new(LeafNode)
	if !s.ReadUint8(&typ) || treekem.NodeType(typ) != treekem.NodeTypeLeaf || !leaf.Unmarshal(&s) {
		return nil, wire.ErrMalformed
	}
	if t.leaves == nil {
		t.leaves = make(map[LeafIndex]*LeafNode)
	}
	t.leaves[l] = leaf
	return leaf, nil
}

// materialize decodes the whole tree.
func (t *lazyTree) materialize() (*treekem.Tree, error) {
	raws := make([][]byte, len(t.chunks))
	size := 0
	for i, c := range t.chunks {
		raw, err := unpackChunk(c)
		if err != nil {
			return nil, err
		}
		raws[i] = raw
		size += len(raw)
		if size > wire.MaxVarint {
			return nil, errors.New("ratchet tree too large")
		}
	}
	enc := wire.AppendVarint(make([]byte, 0, size+4), uint32(size))
	for _, c := range raws {
		enc = append(enc, c...)
	}
	tree, err := treekem.ParseTree(t.cs, enc)
	if err != nil {
		return nil, err
	}
	if tree.LeafCount() != t.leafCount {
		return nil, errors.New("ratchet tree size differs from the epoch's")
	}
	return tree, nil
}

// treeChunks returns the chunk references of t, reusing those of prev
// (with references prevRefs) for the chunks whose nodes are the same
// values, and the encodings of the chunks that were not reused, by index.
func treeChunks(t, prev *treekem.Tree, prevRefs []chunkRef, stored map[chunkRef]int) ([]chunkRef, map[uint32][]byte) {
	end := t.Width()
	for end > 0 && t.IsBlank(treekem.NodeIndex(end-1)) {
		end--
	}
	n := (end + treeChunkNodes - 1) / treeChunkNodes
	refs := make([]chunkRef, n)
	encs := make(map[uint32][]byte)
	for c := range n {
		lo, hi := c*treeChunkNodes, min((c+1)*treeChunkNodes, end)
		if prev != nil && c < uint32(len(prevRefs)) && sameNodes(t, prev, lo, hi) &&
			(hi-lo == treeChunkNodes || int(c) == len(prevRefs)-1 && prevEnd(prev) == hi) {
			if _, ok := stored[prevRefs[c]]; ok {
				refs[c] = prevRefs[c]
				continue
			}
		}
		enc := wire.MustMarshal(func(b *cryptobyte.Builder) {
			for i := lo; i < hi; i++ {
				addNode(b, t, treekem.NodeIndex(i))
			}
		})
		h := sha256.Sum256(enc)
		refs[c] = chunkRef{index: c}
		copy(refs[c].hash[:], h[:])
		encs[c] = packChunk(enc)
	}
	return refs, encs
}

func prevEnd(t *treekem.Tree) uint32 {
	end := t.Width()
	for end > 0 && t.IsBlank(treekem.NodeIndex(end-1)) {
		end--
	}
	return end
}

// sameNodes reports whether nodes lo to hi of a and b are the same shared
// values.
func sameNodes(a, b *treekem.Tree, lo, hi uint32) bool {
	if hi > b.Width() {
		return false
	}
	for i := lo; i < hi; i++ {
		n := treekem.NodeIndex(i)
		if n.IsLeaf() {
			if a.Leaf(n.Leaf()) != b.Leaf(n.Leaf()) {
				return false
			}
		} else if a.ParentNode(n) != b.ParentNode(n) {
			return false
		}
	}
	return true
}

// ---- Encodings of the records.

// headRecord encodes the head:
//
//	struct {
//	    opaque magic[4] = "MLSh";
//	    uint16 version = 2;
//	    CipherSuite cipher_suite;
//	    bool active;
//	    opaque signature_private_key<V>;
//	    opaque current[16];                 // epoch_id
//	    opaque past<V>;                     // epoch_ids, oldest first
//	    ResumptionPSK resumption_psks<V>;   // oldest first
//	    opaque pending_update_keys<V><V>;
//	    optional<Proposal> reinit;
//	    Settings settings;                 // settings.go
//	} GroupHead;
func (g *Group) headRecord(p *persistence) []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddBytes(headMagic[:])
		b.AddUint16(headVersion)
		b.AddUint16(uint16(g.cs))
		wire.AddBool(b, g.active)
		addSecret(b, g.sigPriv.Bytes())
		id := p.epochInfo(g.state.framer).id
		b.AddBytes(id[:])
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, pe := range g.past {
				id := p.epochInfo(pe.framer).id
				b.AddBytes(id[:])
			}
		})
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, r := range g.resumption {
				b.AddUint64(r.epoch)
				wire.AddVarintBytes(b, r.secret)
			}
		})
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, k := range g.pendingUpdates {
				addSecret(b, k.Bytes())
			}
		})
		wire.AddOptional(b, g.reinit != nil, func(b *cryptobyte.Builder) {
			(&Proposal{Type: ProposalTypeReInit, ReInit: g.reinit}).marshal(b)
		})
		g.cfg.marshalSettings(b) // see settings.go
	})
}

// epochRecord encodes the public, fixed part of an epoch:
//
//	struct {
//	    opaque group_context<V>;
//	    opaque interim_transcript_hash<V>;
//	    uint32 max_forward_distance;   // of the epoch's secret tree
//	    uint32 out_of_order_tolerance;
//	    uint32 leaf_count;
//	    opaque chunk_hashes<V>;        // 16 bytes per chunk, in order, up
//	                                   // to the last non-blank node
//	} EpochRecord;
//
// interim_transcript_hash is empty for a past epoch's record written as
// such (it is not needed to read late messages).
func epochRecord(ctxBytes, interim []byte, st *keyschedule.SecretTree, leafCount uint32, chunks []chunkRef) []byte {
	maxFwd, tol := st.Limits()
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, ctxBytes)
		wire.AddVarintBytes(b, interim)
		b.AddUint32(maxFwd)
		b.AddUint32(tol)
		b.AddUint32(leafCount)
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, c := range chunks {
				b.AddBytes(c.hash[:])
			}
		})
	})
}

// keysRecord encodes the secrets of an epoch:
//
//	struct {
//	    uint8 form;   // 1: current, 2: past
//	    select (form) {
//	        case 1: opaque tree_private_keys<V>; opaque epoch_secrets<V>;
//	        case 2: opaque sender_data_secret<V>;
//	    };
//	} EpochKeys;
//
// A past epoch keeps only what reads late messages: its sender-data secret
// (and its secret tree, stored entry by entry).
func keysRecord(st *epochState, fr *framer) []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		if st != nil {
			b.AddUint8(1)
			addSecret(b, st.priv.Bytes())
			addSecret(b, st.secrets.Bytes())
			return
		}
		b.AddUint8(2)
		wire.AddVarintBytes(b, fr.senderDataSecret)
	})
}

// proposalRecord encodes `struct { Sender sender; Proposal proposal; }`.
func proposalRecord(c *cachedProposal) []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		c.sender.marshal(b)
		c.proposal.marshal(b)
	})
}

// pendingRecord encodes a commit this member sent or is about to send:
//
//	struct {
//	    opaque epoch_id[16];       // of the epoch the commit leads to
//	    optional<Proposal> reinit;
//	    opaque commit<V>;          // MLSMessage
//	    opaque welcome<V>;         // MLSMessage, or empty
//	    opaque group_info<V>;      // MLSMessage, or empty
//	} PendingCommitRecord;
func pendingRecord(id epochID, pc *PendingCommit) ([]byte, error) {
	enc := func(m *MLSMessage) ([]byte, error) {
		if m == nil {
			return nil, nil
		}
		return m.Bytes()
	}
	commit, err := enc(pc.Commit)
	if err != nil {
		return nil, err
	}
	welcome, err := enc(pc.Welcome)
	if err != nil {
		return nil, err
	}
	gi, err := enc(pc.GroupInfo)
	if err != nil {
		return nil, err
	}
	return wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddBytes(id[:])
		wire.AddOptional(b, pc.staged.ReInit != nil, func(b *cryptobyte.Builder) {
			(&Proposal{Type: ProposalTypeReInit, ReInit: pc.staged.ReInit}).marshal(b)
		})
		wire.AddVarintBytes(b, commit)
		wire.AddVarintBytes(b, welcome)
		wire.AddVarintBytes(b, gi)
	})
}

// ---- Saving.

// saveStep is the records of one save and what the group's persistence
// tracking becomes once they are committed.
type saveStep struct {
	writes []Record
	apply  []func()
	bytes  int
}

func (s *saveStep) put(key, value []byte) {
	s.writes = append(s.writes, Record{Key: key, Value: value})
	s.bytes += len(key) + len(value)
}

func (s *saveStep) del(key []byte) {
	s.writes = append(s.writes, Record{Key: key})
	s.bytes += len(key)
}

// heldEpoch is one epoch the group holds in memory and stores.
type heldEpoch struct {
	fr    *framer
	tree  *treekem.Tree // nil if not decoded
	state *epochState   // set for the current and pending epochs (the full form)
}

// records returns the records that bring the store from what p says it
// holds to the group's state, with pending the pending commit to store
// (nil for none, or to keep the stored one while the group has not moved).
func (g *Group) records(p *persistence, pending *PendingCommit, discardPending bool) (*saveStep, error) {
	step := &saveStep{}
	held := make([]heldEpoch, 0, len(g.past)+2)
	for _, pe := range g.past {
		held = append(held, heldEpoch{fr: pe.framer, tree: pe.tree})
	}
	held = append(held, heldEpoch{fr: g.state.framer, tree: g.state.tree, state: g.state})

	// The pending commit: a new one, the stored one while unresolved, or
	// none once merged or superseded.
	newPending := p.pending
	var pendingRec []byte
	if pending != nil {
		if pending.staged == nil || pending.staged.state == nil || pending.staged.fromEpoch != g.state.ctx.Epoch || !g.active {
			return nil, fmt.Errorf("%w: pending commit is not from the current epoch", ErrWrongEpoch)
		}
		ps := pending.staged.state
		newPending = &storedPending{id: p.epochInfo(ps.framer).id, fromEpoch: pending.staged.fromEpoch, st: ps}
		var err error
		if pendingRec, err = pendingRecord(newPending.id, pending); err != nil {
			return nil, err
		}
	} else if newPending != nil && (discardPending || newPending.st == nil ||
		newPending.fromEpoch != g.state.ctx.Epoch || newPending.st == g.state) {
		newPending = nil // resolved: merged, superseded or discarded
	}
	if newPending != nil && newPending.st != g.state {
		ps := newPending.st
		held = append(held, heldEpoch{fr: ps.framer, tree: ps.tree, state: ps})
	}
	if pendingRec != nil {
		step.put([]byte{keyPending}, pendingRec)
	} else if p.pending != nil && newPending == nil {
		step.del([]byte{keyPending})
	}

	// The head, computed first: when it changed, the current epoch's keys
	// may have too.
	head := g.headRecord(p)
	headSum := sha256.Sum256(head)
	headChanged := headSum != p.head

	// Which epochs are new, and which stored ones are dropped.
	want := make(map[epochID]struct{}, len(held))
	epochsChanged := false
	for _, h := range held {
		id := p.epochInfo(h.fr).id
		want[id] = struct{}{}
		if se, ok := p.epochs[id]; !ok {
			epochsChanged = true
		} else if se.fr != h.fr {
			return nil, fmt.Errorf("%w: two epochs with the same records", ErrInvalidState)
		}
	}
	if len(want) != len(p.epochs) {
		epochsChanged = true
	}

	var newChunks map[chunkRef]int
	if epochsChanged {
		newChunks = make(map[chunkRef]int)
	}
	var lastTree *treekem.Tree
	var lastRefs []chunkRef
	for _, h := range held {
		in := p.epochInfo(h.fr)
		id := in.id
		se := p.epochs[id]
		chunks := in.chunks
		if se != nil {
			chunks = se.chunks
		}
		if se == nil {
			// A new epoch: its records, the chunks of its tree not yet
			// stored, and its secret tree.
			if chunks == nil {
				if h.tree == nil {
					return nil, fmt.Errorf("%w: epoch %d has no tree", ErrInvalidState, id.epoch())
				}
				refs, encs := treeChunks(h.tree, p.lastTree, p.lastRefs, p.chunks)
				step.apply = append(step.apply, func() { in.chunks = refs })
				chunks = refs
				for c, enc := range encs {
					if r := refs[c]; newChunks[r] == 0 {
						step.put(r.key(), enc)
					}
				}
			}
			if h.tree != nil {
				lastTree, lastRefs = h.tree, chunks
			}
			leafCount := h.fr.secretTree.LeafCount()
			var interim []byte
			if h.state != nil {
				interim = h.state.interim
			}
			step.put(epochKey(keyEpoch, id), epochRecord(h.fr.groupContext, interim, h.fr.secretTree, leafCount, chunks))
			keysRec := keysRecord(h.state, h.fr)
			keysSum := sha256.Sum256(keysRec)
			step.put(epochKey(keyKeys, id), keysRec)
			entries := h.fr.secretTree.Entries()
			keys := make(map[uint32]struct{}, len(entries))
			for _, e := range entries {
				step.put(secretKey(id, e.Node), e.Value)
				keys[e.Node] = struct{}{}
			}
			fr, past := h.fr, h.state == nil
			step.apply = append(step.apply, func() {
				fr.secretTree.TrackChanges()
				fr.secretTree.ClearChanges()
				p.epochs[id] = &storedEpoch{past: past, keysSum: keysSum, chunks: chunks, secrets: keys, fr: fr}
			})
		} else {
			if h.state == nil && !se.past {
				step.put(epochKey(keyKeys, id), keysRecord(nil, h.fr))
				step.apply = append(step.apply, func() { se.past = true })
			}
			if h.state != nil && headChanged {
				// The epoch's secrets change within an epoch only when a
				// merge erases the init secret (this member was removed).
				rec := keysRecord(h.state, h.fr)
				if sum := sha256.Sum256(rec); sum != se.keysSum {
					step.put(epochKey(keyKeys, id), rec)
					step.apply = append(step.apply, func() { se.keysSum = sum })
				} else {
					clear(rec)
				}
			}
			if changes := h.fr.secretTree.Changes(); len(changes) > 0 {
				for _, e := range changes {
					k := secretKey(id, e.Node)
					if e.Value != nil {
						step.put(k, e.Value)
					} else if _, ok := se.secrets[e.Node]; ok {
						step.del(k)
					}
				}
				st := h.fr.secretTree
				step.apply = append(step.apply, func() {
					for _, e := range changes {
						if e.Value == nil {
							delete(se.secrets, e.Node)
						} else {
							se.secrets[e.Node] = struct{}{}
						}
					}
					st.ClearChanges()
				})
			}
		}
		if epochsChanged {
			for _, r := range chunks {
				newChunks[r]++
			}
		}
	}
	if epochsChanged {
		for id, se := range p.epochs {
			if _, ok := want[id]; ok {
				continue
			}
			step.del(epochKey(keyEpoch, id))
			step.del(epochKey(keyKeys, id))
			for n := range se.secrets {
				step.del(secretKey(id, n))
			}
			step.apply = append(step.apply, func() { delete(p.epochs, id) })
		}
		for r := range p.chunks {
			if newChunks[r] == 0 {
				step.del(r.key())
			}
		}
		step.apply = append(step.apply, func() {
			p.chunks = newChunks
			if lastTree != nil {
				p.lastTree, p.lastRefs = lastTree, lastRefs
			}
		})
	}

	// Proposals of the current epoch.
	if len(g.state.proposals) > 0 || len(p.proposals) > 0 {
		seen := make(map[string]struct{}, len(g.state.proposals))
		for i := range g.state.proposals {
			c := &g.state.proposals[i]
			seen[string(c.ref)] = struct{}{}
			if _, ok := p.proposals[string(c.ref)]; !ok {
				step.put(append([]byte{keyProposal}, c.ref...), proposalRecord(c))
			}
		}
		for ref := range p.proposals {
			if _, ok := seen[ref]; !ok {
				step.del(append([]byte{keyProposal}, ref...))
			}
		}
		step.apply = append(step.apply, func() { p.proposals = seen })
	}

	// The head.
	if headChanged {
		step.put([]byte{keyHead}, head)
	} else {
		clear(head)
	}
	step.apply = append(step.apply, func() { p.head = headSum; p.pending = newPending })
	return step, nil
}

// ---- Loading.

// loadedRecords is a group's records sorted by kind.
type loadedRecords struct {
	head      []byte
	pending   []byte
	epochs    map[epochID][]byte
	keys      map[epochID][]byte
	chunks    map[chunkRef][]byte
	secrets   map[epochID][]keyschedule.SecretTreeEntry
	proposals [][2][]byte
}

func sortRecords(recs []Record) (*loadedRecords, error) {
	lr := &loadedRecords{
		epochs:  map[epochID][]byte{},
		keys:    map[epochID][]byte{},
		chunks:  map[chunkRef][]byte{},
		secrets: map[epochID][]keyschedule.SecretTreeEntry{},
	}
	nProposals := 0
	for _, r := range recs {
		if len(r.Key) > 0 && r.Key[0] == keyProposal {
			nProposals++
		}
	}
	lr.proposals = make([][2][]byte, 0, nProposals)
	for _, r := range recs {
		k := r.Key
		if len(k) == 0 {
			return nil, fmt.Errorf("%w: empty record key", ErrInvalidState)
		}
		bad := false
		switch k[0] {
		case keyHead:
			lr.head, bad = r.Value, len(k) != 1
		case keyPending:
			lr.pending, bad = r.Value, len(k) != 1
		case keyEpoch, keyKeys:
			if bad = len(k) != 17; !bad {
				id := epochID(k[1:])
				if k[0] == keyEpoch {
					lr.epochs[id] = r.Value
				} else {
					lr.keys[id] = r.Value
				}
			}
		case keyChunk:
			if bad = len(k) != 1+4+chunkHashSize; !bad {
				ref := chunkRef{index: binary.BigEndian.Uint32(k[1:5])}
				copy(ref.hash[:], k[5:])
				lr.chunks[ref] = r.Value
			}
		case keySecret:
			if bad = len(k) != 1+16+4; !bad {
				id := epochID(k[1:17])
				lr.secrets[id] = append(lr.secrets[id], keyschedule.SecretTreeEntry{Node: binary.BigEndian.Uint32(k[17:]), Value: r.Value})
			}
		case keyProposal:
			lr.proposals = append(lr.proposals, [2][]byte{k[1:], r.Value})
		case keyApp:
		default:
			bad = true
		}
		if bad {
			return nil, fmt.Errorf("%w: unknown record key %x", ErrInvalidState, k)
		}
	}
	if lr.head == nil {
		return nil, fmt.Errorf("%w: no head record", ErrInvalidState)
	}
	return lr, nil
}

// loadEpoch is one epoch as read from its records.
type loadEpoch struct {
	ctx      GroupContext
	ctxBytes []byte
	interim  []byte
	lazy     *lazyTree
	chunks   []chunkRef
	fr       *framer
	state    *epochState // for the current form
	secrets  map[uint32]struct{}
	pastForm bool // the keys record is in the past form
}

// restoreGroup rebuilds a group from its records. The tree of each epoch
// is not decoded: see [Group.needTree].
func restoreGroup(recs []Record, revision uint64, cfg *Config) (g *Group, err error) {
	lr, err := sortRecords(recs)
	if err != nil {
		return nil, err
	}
	fail := func(what string, err error) error {
		if err == nil {
			return fmt.Errorf("%w: %s", ErrInvalidState, what)
		}
		return fmt.Errorf("%w: %s: %w", ErrInvalidState, what, err)
	}
	s := cryptobyte.String(lr.head)
	var (
		version, suite uint16
		sigRaw         []byte
		cur            [16]byte
		past           cryptobyte.String
	)
	var magic []byte
	if !s.ReadBytes(&magic, 4) || !bytes.Equal(magic, headMagic[:]) || !s.ReadUint16(&version) {
		return nil, fail("not a group head", nil)
	}
	if version != headVersion {
		return nil, fmt.Errorf("%w: %w: head version %d", ErrInvalidState, ErrUnsupported, version)
	}
	g = &Group{}
	if cfg != nil {
		g.cfg = *cfg
	}
	if !s.ReadUint16(&suite) || !wire.ReadBool(&s, &g.active) || !wire.ReadVarintBytes(&s, &sigRaw) ||
		!s.CopyBytes(cur[:]) || !wire.ReadVarintPrefixed(&s, &past) {
		return nil, fail("truncated head", nil)
	}
	defer clear(sigRaw)
	g.cs = CipherSuite(suite)
	cs := g.cs
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: %w: cipher suite %v", ErrInvalidState, ErrUnsupported, cs)
	}
	var erase []func()
	defer func() {
		if err != nil {
			for _, f := range erase {
				f()
			}
			g = nil
		}
	}()
	if g.sigPriv, err = cs.NewSignaturePrivateKey(sigRaw); err != nil {
		return nil, fail("signature key", err)
	}
	if !wire.ReadVector(&s, func(s *cryptobyte.String) bool {
		var r resumptionPSK
		if !s.ReadUint64(&r.epoch) || !wire.ReadVarintBytes(s, &r.secret) || len(r.secret) != cs.HashSize() {
			return false
		}
		if n := len(g.resumption); n > 0 && r.epoch <= g.resumption[n-1].epoch {
			return false
		}
		g.resumption = append(g.resumption, r)
		erase = append(erase, func() { clear(r.secret) })
		return true
	}) {
		return nil, fail("resumption PSKs", nil)
	}
	var keyErr error
	if !wire.ReadVector(&s, func(s *cryptobyte.String) bool {
		var raw []byte
		if !wire.ReadVarintBytes(s, &raw) {
			return false
		}
		k, err := cs.NewPrivateKey(raw)
		clear(raw)
		if err != nil {
			keyErr = err
			return false
		}
		g.pendingUpdates = append(g.pendingUpdates, k)
		return true
	}) {
		return nil, fail("pending update keys", keyErr)
	}
	var hasReInit bool
	if !wire.ReadOptional(&s, &hasReInit) {
		return nil, fail("reinit", nil)
	}
	if hasReInit {
		var pr Proposal
		if !pr.unmarshal(&s) || pr.Type != ProposalTypeReInit || pr.ReInit == nil {
			return nil, fail("reinit", nil)
		}
		g.reinit = pr.ReInit
	}
	// The group's protocol settings override those of cfg, whose hooks
	// are kept (settings.go). Heads written before settings were stored
	// end here.
	if !s.Empty() && !g.cfg.unmarshalSettings(&s) {
		return nil, fail("settings", nil)
	}
	if !s.Empty() {
		return nil, fail("head: trailing data", nil)
	}

	p := g.persist()
	p.revision = revision
	p.head = sha256.Sum256(lr.head)
	for r := range lr.chunks {
		p.chunks[r] = 0
	}
	load := func(id epochID, current bool) (*loadEpoch, error) {
		le, err := loadEpochRecords(cs, lr, id, current)
		if le != nil {
			erase = append(erase, func() {
				le.fr.secretTree.Erase()
				clear(le.fr.senderDataSecret)
				if le.state != nil {
					le.state.secrets.Erase()
				}
			})
		}
		if err != nil {
			return nil, err
		}
		p.info[le.fr] = &epochInfo{id: id, chunks: le.chunks, lazy: le.lazy}
		p.epochs[id] = &storedEpoch{past: le.pastForm, keysSum: sha256.Sum256(lr.keys[id]), chunks: le.chunks, secrets: le.secrets, fr: le.fr}
		for _, r := range le.chunks {
			p.chunks[r]++
		}
		le.fr.secretTree.TrackChanges()
		return le, nil
	}

	// The current epoch.
	le, err := load(epochID(cur), true)
	if err != nil {
		return nil, fail("current epoch", err)
	}
	st := le.state
	g.state = st
	me := st.priv.LeafIndex()
	myLeaf, err := le.lazy.leaf(me)
	if err != nil || myLeaf == nil || st.priv.Key(me.Node()) == nil {
		return nil, fail("own leaf is blank or its key is missing", err)
	}
	if !bytes.Equal(g.sigPriv.PublicKey(), myLeaf.SignatureKey) ||
		!bytes.Equal(st.priv.Key(me.Node()).PublicKey(), myLeaf.EncryptionKey) {
		return nil, fail("own keys do not match the own leaf", nil)
	}

	// Past epochs, oldest first.
	for !past.Empty() {
		var id epochID
		if !past.CopyBytes(id[:]) {
			return nil, fail("past epochs", nil)
		}
		pe, err := load(id, false)
		if err != nil {
			return nil, fail("past epoch", err)
		}
		if !bytes.Equal(pe.ctx.GroupID, st.ctx.GroupID) || pe.ctx.Epoch >= st.ctx.Epoch ||
			len(g.past) > 0 && pe.ctx.Epoch <= g.past[len(g.past)-1].epoch {
			return nil, fail("past epochs out of order", nil)
		}
		g.past = append(g.past, &pastEpoch{epoch: pe.ctx.Epoch, framer: pe.fr, ctxBytes: pe.ctxBytes})
	}
	for _, r := range g.resumption {
		if r.epoch >= st.ctx.Epoch {
			return nil, fail("resumption PSKs", nil)
		}
	}

	// Cached proposals, in the order of their references (the cache is
	// unordered), checked for duplicates in linear time.
	refs := make(map[string]struct{}, len(lr.proposals))
	st.proposals = make([]cachedProposal, 0, len(lr.proposals))
	for _, kv := range lr.proposals {
		var c cachedProposal
		c.proposal = new(Proposal)
		s := cryptobyte.String(kv[1])
		if len(kv[0]) != cs.HashSize() || !c.sender.unmarshal(&s) || !c.proposal.unmarshal(&s) || !s.Empty() {
			return nil, fail("cached proposal", nil)
		}
		if _, dup := refs[string(kv[0])]; dup {
			return nil, fail("cached proposal twice", nil)
		}
		refs[string(kv[0])] = struct{}{}
		c.ref = ProposalRef(kv[0])
		st.proposals = append(st.proposals, c)
	}
	p.proposals = refs

	// A pending commit of this member.
	if lr.pending != nil {
		pc, id, err := restorePending(lr.pending)
		if err != nil {
			return nil, fail("pending commit", err)
		}
		if _, ok := lr.epochs[id]; !ok {
			return nil, fail("pending commit's epoch missing", nil)
		}
		if id.epoch() != st.ctx.Epoch+1 {
			// Stored, but the group has moved on: the next save drops it.
			p.pending = &storedPending{id: id, fromEpoch: id.epoch() - 1}
		} else {
			pe, err := load(id, true)
			if err != nil {
				return nil, fail("pending epoch", err)
			}
			if !bytes.Equal(pe.ctx.GroupID, st.ctx.GroupID) || pe.state.priv.LeafIndex() != me {
				return nil, fail("pending epoch does not belong to the group", nil)
			}
			pc.staged.fromEpoch = st.ctx.Epoch
			pc.staged.state = pe.state
			pc.staged.Committer = Sender{Type: SenderTypeMember, Index: uint32(me)}
			p.pending = &storedPending{id: id, fromEpoch: st.ctx.Epoch, st: pe.state}
			p.recovered = pc
		}
	}
	// Epochs stored but not referenced (a crash cannot leave them, but a
	// save deletes them anyway).
	for id := range lr.epochs {
		if _, ok := p.epochs[id]; !ok {
			p.epochs[id] = &storedEpoch{secrets: map[uint32]struct{}{}}
			for _, e := range lr.secrets[id] {
				p.epochs[id].secrets[e.Node] = struct{}{}
			}
		}
	}
	// Keep no more than cfg allows, if it allows less than when saved.
	for len(g.past) > g.cfg.pastEpochs() {
		g.past[0].framer.secretTree.Erase()
		clear(g.past[0].framer.senderDataSecret)
		g.past = g.past[1:]
	}
	for len(g.resumption) > g.cfg.resumptionEpochs() {
		clear(g.resumption[0].secret)
		g.resumption = g.resumption[1:]
	}
	return g, nil
}

// loadEpochRecords reads the records of one epoch.
func loadEpochRecords(cs CipherSuite, lr *loadedRecords, id epochID, current bool) (*loadEpoch, error) {
	rec, ok := lr.epochs[id]
	keys, ok2 := lr.keys[id]
	if !ok || !ok2 {
		return nil, errors.New("epoch records missing")
	}
	le := &loadEpoch{}
	var maxFwd, tol, leafCount uint32
	var chunks cryptobyte.String
	err := wire.Parse(rec, func(s *cryptobyte.String) bool {
		return wire.ReadVarintBytes(s, &le.ctxBytes) && wire.ReadVarintBytes(s, &le.interim) &&
			s.ReadUint32(&maxFwd) && s.ReadUint32(&tol) && s.ReadUint32(&leafCount) &&
			wire.ReadVarintPrefixed(s, &chunks)
	})
	if err != nil {
		return nil, err
	}
	ctx, err := keyschedule.ParseGroupContext(le.ctxBytes)
	if err != nil {
		return nil, err
	}
	le.ctx = *ctx
	if ctx.Version != keyschedule.MLS10 || ctx.CipherSuite != cs || len(ctx.TreeHash) != cs.HashSize() ||
		newEpochID(ctx.Epoch, le.ctxBytes) != id {
		return nil, errors.New("group context")
	}
	if leafCount == 0 || leafCount&(leafCount-1) != 0 || leafCount > 1<<30 {
		return nil, errors.New("leaf count")
	}
	le.lazy = &lazyTree{cs: cs, leafCount: leafCount}
	for !chunks.Empty() {
		r := chunkRef{index: uint32(len(le.chunks))}
		if !chunks.CopyBytes(r.hash[:]) {
			return nil, wire.ErrMalformed
		}
		raw, ok := lr.chunks[r]
		if !ok {
			return nil, fmt.Errorf("tree chunk %d missing", r.index)
		}
		le.chunks = append(le.chunks, r)
		le.lazy.chunks = append(le.lazy.chunks, raw)
	}
	if uint64(len(le.chunks))*treeChunkNodes > 2*uint64(leafCount)-1+treeChunkNodes || len(le.chunks) == 0 {
		return nil, errors.New("tree chunks do not fit the leaf count")
	}

	entries := lr.secrets[id]
	le.secrets = make(map[uint32]struct{}, len(entries))
	for _, e := range entries {
		le.secrets[e.Node] = struct{}{}
	}
	st, err := keyschedule.RestoreSecretTree(cs, leafCount, maxFwd, tol, entries)
	if err != nil {
		return nil, err
	}
	le.fr = &framer{cs: cs, groupID: ctx.GroupID, epoch: ctx.Epoch, groupContext: le.ctxBytes, secretTree: st}

	ks := cryptobyte.String(keys)
	var form uint8
	if !ks.ReadUint8(&form) {
		return le, wire.ErrMalformed
	}
	switch {
	case form == 2 && !current:
		le.pastForm = true
		if !wire.ReadVarintBytes(&ks, &le.fr.senderDataSecret) || len(le.fr.senderDataSecret) != cs.HashSize() || !ks.Empty() {
			return le, wire.ErrMalformed
		}
		return le, nil
	case form == 1:
		var privRaw, secretsRaw []byte
		if !wire.ReadVarintBytes(&ks, &privRaw) || !wire.ReadVarintBytes(&ks, &secretsRaw) || !ks.Empty() {
			return le, wire.ErrMalformed
		}
		defer clear(privRaw)
		defer clear(secretsRaw)
		secrets, err := keyschedule.ParseEpochSecrets(secretsRaw)
		if err != nil {
			return le, err
		}
		le.fr.senderDataSecret = bytes.Clone(secrets.SenderDataSecret())
		if !current {
			// A past epoch whose keys were not yet reduced: keep only the
			// sender-data secret.
			secrets.Erase()
			return le, nil
		}
		le.state = &epochState{ctx: le.ctx, ctxBytes: le.ctxBytes, extensions: le.ctx.Extensions, secrets: secrets, interim: le.interim, framer: le.fr}
		if secrets.Suite() != cs || secrets.EncryptionSecret() != nil || len(le.interim) != cs.HashSize() {
			return le, errors.New("epoch secrets")
		}
		le.fr.membershipKey = secrets.MembershipKey()
		priv, err := treekem.ParsePrivateKeys(privRaw)
		if err != nil {
			return le, err
		}
		for _, n := range priv.Nodes() {
			if k := priv.Key(n); k.Suite() != cs {
				return le, errors.New("tree private key of another cipher suite")
			}
		}
		le.state.priv = priv
		return le, nil
	}
	return le, errors.New("epoch keys")
}

// restorePending reads a PendingCommitRecord into a PendingCommit without
// its staged state.
func restorePending(data []byte) (*PendingCommit, epochID, error) {
	var id epochID
	var commit, welcome, gi []byte
	var reinit *ReInitProposal
	err := wire.Parse(data, func(s *cryptobyte.String) bool {
		var has bool
		if !s.CopyBytes(id[:]) || !wire.ReadOptional(s, &has) {
			return false
		}
		if has {
			var p Proposal
			if !p.unmarshal(s) || p.Type != ProposalTypeReInit || p.ReInit == nil {
				return false
			}
			reinit = p.ReInit
		}
		return wire.ReadVarintBytes(s, &commit) && wire.ReadVarintBytes(s, &welcome) && wire.ReadVarintBytes(s, &gi)
	})
	if err != nil {
		return nil, id, err
	}
	pc := &PendingCommit{staged: &StagedCommit{ReInit: reinit}}
	parse := func(b []byte, out **MLSMessage) error {
		if len(b) == 0 {
			return nil
		}
		m, err := ParseMessage(b)
		*out = m
		return err
	}
	if err := errors.Join(parse(commit, &pc.Commit), parse(welcome, &pc.Welcome), parse(gi, &pc.GroupInfo)); err != nil {
		return nil, id, err
	}
	if pc.Commit == nil {
		return nil, id, errors.New("no commit")
	}
	return pc, id, nil
}
