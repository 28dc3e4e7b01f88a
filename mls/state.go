package mls

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// This file implements the persistent form of a [Group]: everything one
// member needs to continue after a restart, in a versioned binary encoding.

// ErrInvalidState is matched by every error of [LoadGroup] and
// [ParseKeyPackagePrivate] for bytes that are not a state this package
// wrote: truncated, corrupted, or of an unknown version (then the error
// also matches [ErrUnsupported]).
var ErrInvalidState = errors.New("mls: invalid stored state")

// StateVersion is the version of the state encoding written by
// [Group.MarshalState]. [LoadGroup] reads this version and every earlier
// one.
const StateVersion = 1

// stateMagic starts every encoded state, so that other data stored by
// mistake is recognized at once.
var stateMagic = [4]byte{'M', 'L', 'S', 'g'}

const stateChecksumSize = sha256.Size

// MarshalState returns the group's complete state as one value, for export
// or for stores that hold a group as a whole; [LoadGroup] restores it. Most
// applications persist groups as records with [SaveGroup] instead, which
// writes only what changed (a few bytes per message, not the group). It holds every secret this member needs to continue: its
// signature private key, the private keys of its path in the ratchet tree,
// the epoch's key-schedule secrets and secret-tree ratchets (with the keys
// kept for out-of-order messages), the decryption keys of the past epochs
// kept by [Config.PastEpochs], the resumption PSKs kept by
// [Config.ResumptionPSKEpochs], the proposals received in this epoch, the
// private keys of this member's pending Update proposals, and the ReInit
// that ended the group, if any (see [Group.PendingReInit]). The Config
// itself is not part of the state: its functions are passed again to
// LoadGroup.
//
// The state must be kept secret and stored only encrypted at rest where the
// platform allows. It holds nothing the group has deleted for forward
// secrecy (RFC 9420, §9.2), so each saved state must replace the previous
// one: a stale copy would bring deleted keys back. A state changes not only
// with each epoch but also with every message sent or received in a
// PrivateMessage, which consumes a ratchet key; save it after each.
//
// The encoding, in the TLS presentation language of RFC 9420, §2.1, is:
//
//	struct {
//	    opaque magic[4] = "MLSg";
//	    uint16 version = 1;
//	    CipherSuite cipher_suite;
//	    bool active;
//	    opaque signature_private_key<V>;
//	    GroupContext group_context;
//	    opaque interim_transcript_hash<V>;
//	    opaque ratchet_tree<V>;          // optional<Node> ratchet_tree<V>, §12.4.3.3
//	    opaque tree_private_keys<V>;     // treekem.PrivateKeys.Bytes
//	    opaque epoch_secrets<V>;         // keyschedule.EpochSecrets.Bytes
//	    opaque secret_tree<V>;           // keyschedule.SecretTree.Bytes
//	    CachedProposal proposals<V>;
//	    opaque pending_update_keys<V><V>;
//	    optional<Proposal> reinit;        // the ReInit that ended the group
//	    ResumptionPSK resumption_psks<V>; // oldest first
//	    PastEpoch past_epochs<V>;         // oldest first
//	    opaque checksum[32];              // SHA-256 of all that precedes
//	} GroupState;
//	struct { opaque ref<V>; Sender sender; Proposal proposal; } CachedProposal;
//	struct { uint64 epoch; opaque secret<V>; } ResumptionPSK;
//	struct {
//	    opaque group_context<V>;
//	    opaque sender_data_secret<V>;
//	    opaque secret_tree<V>;
//	    uint32 leaf_count;
//	    NodeChange changes<V>;     // nodes within the current tree's width
//	    optional<Node> tail<V>;    // nodes beyond it, to the last non-blank one
//	} PastEpoch;
//	struct { uint32 node_index; optional<Node> node; } NodeChange;
//
// A past epoch's ratchet tree is stored as its difference from the current
// one: the nodes that differ, and the nodes past the end of the current
// tree if the past one was wider. Keeping past epochs thus costs little more
// than the nodes their commits changed.
func (g *Group) MarshalState() ([]byte, error) {
	if g.state == nil {
		return nil, errors.New("mls: marshaling an uninitialized group")
	}
	if err := g.needTree(); err != nil {
		return nil, err
	}
	for _, p := range g.past {
		if _, err := g.pastTree(p); err != nil {
			return nil, err
		}
	}
	st := g.state
	cur := encodeNodes(st.tree)
	body, err := wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddBytes(stateMagic[:])
		b.AddUint16(StateVersion)
		b.AddUint16(uint16(g.cs))
		wire.AddBool(b, g.active)
		addSecret(b, g.sigPriv.Bytes())
		st.ctx.Marshal(b)
		wire.AddVarintBytes(b, st.interim)
		addTree(b, cur)
		addSecret(b, st.priv.Bytes())
		addSecret(b, st.secrets.Bytes())
		addSecret(b, st.framer.secretTree.Bytes())
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, p := range st.proposals {
				wire.AddVarintBytes(b, p.ref)
				p.sender.marshal(b)
				p.proposal.marshal(b)
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
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, r := range g.resumption {
				b.AddUint64(r.epoch)
				wire.AddVarintBytes(b, r.secret)
			}
		})
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, p := range g.past {
				wire.AddVarintBytes(b, p.ctxBytes)
				wire.AddVarintBytes(b, p.framer.senderDataSecret)
				addSecret(b, p.framer.secretTree.Bytes())
				b.AddUint32(p.tree.LeafCount())
				wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
					addTreeChanges(b, p.tree, st.tree, cur)
				})
				var tail [][]byte
				for i := st.tree.Width(); i < p.tree.Width(); i++ {
					tail = append(tail, wire.MustMarshal(func(b *cryptobyte.Builder) { addNode(b, p.tree, treekem.NodeIndex(i)) }))
				}
				addTree(b, tail)
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("mls: marshaling group state: %w", err)
	}
	sum := sha256.Sum256(body)
	return append(body, sum[:]...), nil
}

// addSecret adds a fresh copy of a secret as opaque<V> and erases the
// copy.
func addSecret(b *cryptobyte.Builder, v []byte) {
	wire.AddVarintBytes(b, v)
	clear(v)
}

// addTree adds `optional<Node> ratchet_tree<V>` of the nodes, whose
// encodings are given.
func addTree(b *cryptobyte.Builder, nodes [][]byte) {
	enc := treeEncoding(nodes)
	if enc == nil {
		b.SetError(errors.New("mls: ratchet tree too large to encode"))
		return
	}
	b.AddBytes(enc)
}

// encodeNodes returns the encoding of each node of t as optional<Node>.
func encodeNodes(t *treekem.Tree) [][]byte {
	out := make([][]byte, t.Width())
	for i := range out {
		out[i] = wire.MustMarshal(func(b *cryptobyte.Builder) { addNode(b, t, treekem.NodeIndex(i)) })
	}
	return out
}

// addNode adds node n of t as optional<Node> (RFC 9420, §12.4.3.3).
func addNode(b *cryptobyte.Builder, t *treekem.Tree, n treekem.NodeIndex) {
	if n.IsLeaf() {
		if l := t.Leaf(n.Leaf()); l != nil {
			b.AddUint8(1)
			b.AddUint8(uint8(treekem.NodeTypeLeaf))
			l.Marshal(b)
			return
		}
	} else if p := t.ParentNode(n); p != nil {
		b.AddUint8(1)
		b.AddUint8(uint8(treekem.NodeTypeParent))
		p.Marshal(b)
		return
	}
	b.AddUint8(0)
}

// treeEncoding returns `optional<Node> ratchet_tree<V>` of the nodes, whose
// encodings are given, up to the last non-blank one.
func treeEncoding(nodes [][]byte) []byte {
	end := len(nodes)
	for end > 0 && isBlankEncoding(nodes[end-1]) {
		end--
	}
	size := 0
	for _, n := range nodes[:end] {
		size += len(n)
	}
	if size > wire.MaxVarint {
		return nil // not a valid tree: rejected by the parser
	}
	out := wire.AppendVarint(make([]byte, 0, size+4), uint32(size))
	for _, n := range nodes[:end] {
		out = append(out, n...)
	}
	return out
}

// splitNodes returns the encodings of the nodes of a ratchet_tree<V> body,
// which is known to parse, without copying.
func splitNodes(body cryptobyte.String) [][]byte {
	var out [][]byte
	for !body.Empty() {
		start := body
		if !skipNode(&body) {
			return nil
		}
		out = append(out, start[:len(start)-len(body)])
	}
	return out
}

func isBlankEncoding(n []byte) bool { return len(n) == 1 && n[0] == 0 }

// addTreeChanges adds the nodes of past within the width of cur that
// differ from those of cur, whose encodings are curNodes.
func addTreeChanges(b *cryptobyte.Builder, past, cur *treekem.Tree, curNodes [][]byte) {
	for i := range min(past.Width(), cur.Width()) {
		n := treekem.NodeIndex(i)
		if n.IsLeaf() && past.Leaf(n.Leaf()) == cur.Leaf(n.Leaf()) {
			continue // the same shared value, or both blank
		}
		if !n.IsLeaf() && past.ParentNode(n) == cur.ParentNode(n) {
			continue
		}
		enc := wire.MustMarshal(func(b *cryptobyte.Builder) { addNode(b, past, n) })
		if bytes.Equal(enc, curNodes[i]) {
			continue
		}
		b.AddUint32(i)
		b.AddBytes(enc)
	}
}

// LoadGroup restores a group from a state returned by [Group.MarshalState],
// of this version of the encoding or an earlier one, with the
// application's choices cfg (nil selects the defaults). It checks the
// state's checksum and its consistency: the ratchet tree against the tree
// hash of the GroupContext, the private keys against the tree, the
// signature key against this member's leaf, and the size of every secret.
// Every error matches [ErrInvalidState]; loading never panics, whatever the
// input.
//
// If cfg keeps fewer past epochs or resumption PSKs than the state holds,
// the oldest are erased. The secret-tree limits in effect when the state was saved
// ([Config.MaxForwardDistance], [Config.OutOfOrderTolerance]) stay in
// effect for the epochs it holds; cfg's limits apply from the next epoch.
func LoadGroup(state []byte, cfg *Config) (*Group, error) {
	if len(state) < len(stateMagic)+2+stateChecksumSize || !bytes.Equal(state[:len(stateMagic)], stateMagic[:]) {
		return nil, fmt.Errorf("%w: not a group state", ErrInvalidState)
	}
	body, sum := state[:len(state)-stateChecksumSize], state[len(state)-stateChecksumSize:]
	want := sha256.Sum256(body)
	if subtle.ConstantTimeCompare(sum, want[:]) != 1 {
		return nil, fmt.Errorf("%w: checksum mismatch (corrupted or truncated)", ErrInvalidState)
	}
	return parseState(body, cfg)
}

// parseState decodes the state without its checksum.
func parseState(body []byte, cfg *Config) (*Group, error) {
	s := cryptobyte.String(body)
	var version uint16
	if !s.Skip(len(stateMagic)) || !s.ReadUint16(&version) {
		return nil, fmt.Errorf("%w: truncated header", ErrInvalidState)
	}
	switch version {
	case 1:
		return parseStateV1(s, cfg)
	}
	return nil, fmt.Errorf("%w: %w: state version %d", ErrInvalidState, ErrUnsupported, version)
}

// stateDecoder collects what parseStateV1 has decoded, to erase it if the
// state turns out to be invalid, and the decoded copies of secrets that
// were parsed into other structures, to erase them in any case.
type stateDecoder struct {
	cs      CipherSuite
	secrets []*keyschedule.EpochSecrets
	trees   []*keyschedule.SecretTree
	raw     [][]byte
	temp    [][]byte
}

func (d *stateDecoder) eraseTemp() {
	for _, r := range d.temp {
		clear(r)
	}
}

func (d *stateDecoder) erase() {
	for _, s := range d.secrets {
		s.Erase()
	}
	for _, t := range d.trees {
		t.Erase()
	}
	for _, r := range d.raw {
		clear(r)
	}
}

// secret reads a secret of KDF.Nh bytes.
func (d *stateDecoder) secret(s *cryptobyte.String, out *[]byte) bool {
	if !wire.ReadVarintBytes(s, out) {
		return false
	}
	d.raw = append(d.raw, *out)
	return len(*out) == d.cs.HashSize()
}

func parseStateV1(s cryptobyte.String, cfg *Config) (g *Group, err error) {
	var suite uint16
	if !s.ReadUint16(&suite) {
		return nil, fmt.Errorf("%w: truncated header", ErrInvalidState)
	}
	cs := CipherSuite(suite)
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: %w: cipher suite %v", ErrInvalidState, ErrUnsupported, cs)
	}
	d := &stateDecoder{cs: cs}
	defer func() {
		d.eraseTemp()
		if err != nil {
			d.erase()
			g = nil
		}
	}()
	fail := func(what string, err error) error {
		if err == nil {
			return fmt.Errorf("%w: %s", ErrInvalidState, what)
		}
		return fmt.Errorf("%w: %s: %w", ErrInvalidState, what, err)
	}

	g = &Group{cs: cs}
	if cfg != nil {
		g.cfg = *cfg
	}
	var (
		sigRaw, interim, treeRaw, privRaw, secretsRaw, stRaw []byte
		ctx                                                  GroupContext
	)
	if !wire.ReadBool(&s, &g.active) || !wire.ReadVarintBytes(&s, &sigRaw) {
		return nil, fail("truncated", nil)
	}
	d.temp = append(d.temp, sigRaw)
	if g.sigPriv, err = cs.NewSignaturePrivateKey(sigRaw); err != nil {
		return nil, fail("signature key", err)
	}
	if k := g.sigPriv.Bytes(); !bytes.Equal(k, sigRaw) {
		clear(k)
		return nil, fail("signature key not in its canonical form", nil)
	}
	var treeBody cryptobyte.String
	if !ctx.Unmarshal(&s) || !d.secret(&s, &interim) || !readRaw(&s, &treeRaw, &treeBody) ||
		!wire.ReadVarintBytes(&s, &privRaw) ||
		!wire.ReadVarintBytes(&s, &secretsRaw) || !wire.ReadVarintBytes(&s, &stRaw) {
		return nil, fail("truncated or malformed epoch state", nil)
	}
	d.temp = append(d.temp, privRaw, secretsRaw, stRaw)
	if ctx.Version != keyschedule.MLS10 || ctx.CipherSuite != cs || len(ctx.TreeHash) != cs.HashSize() ||
		len(ctx.ConfirmedTranscriptHash) != 0 && len(ctx.ConfirmedTranscriptHash) != cs.HashSize() {
		return nil, fail("group context", nil)
	}

	// The ratchet tree, checked against the GroupContext's tree hash, and
	// this member's keys, checked against the tree.
	tree, err := treekem.ParseTree(cs, treeRaw)
	if err != nil {
		return nil, fail("ratchet tree", err)
	}
	if !bytes.Equal(tree.TreeHash(), ctx.TreeHash) {
		return nil, fail("ratchet tree does not match the tree hash", nil)
	}
	priv, err := treekem.ParsePrivateKeys(privRaw)
	if err != nil {
		return nil, fail("tree private keys", err)
	}
	enc := priv.Bytes()
	canonical := bytes.Equal(enc, privRaw)
	clear(enc)
	if !canonical {
		return nil, fail("tree private keys not in their canonical form", nil)
	}
	me := priv.LeafIndex()
	myLeaf := tree.Leaf(me)
	if myLeaf == nil || priv.Key(me.Node()) == nil {
		return nil, fail("own leaf is blank or its key is missing", nil)
	}
	for _, n := range priv.Nodes() {
		if k := priv.Key(n); k.Suite() != cs {
			return nil, fail("tree private key of another cipher suite", nil)
		}
	}
	if err := priv.Verify(tree); err != nil {
		return nil, fail("tree private keys", err)
	}
	if !bytes.Equal(g.sigPriv.PublicKey(), myLeaf.SignatureKey) {
		return nil, fail("signature key does not match the own leaf", nil)
	}

	// The key schedule and the secret tree of the current epoch.
	secrets, err := keyschedule.ParseEpochSecrets(secretsRaw)
	if err != nil {
		return nil, fail("epoch secrets", err)
	}
	d.secrets = append(d.secrets, secrets)
	if secrets.Suite() != cs || secrets.EncryptionSecret() != nil {
		return nil, fail("epoch secrets", nil)
	}
	secretTree, err := keyschedule.ParseSecretTree(stRaw)
	if err != nil {
		return nil, fail("secret tree", err)
	}
	d.trees = append(d.trees, secretTree)
	if secretTree.LeafCount() != tree.LeafCount() {
		return nil, fail("secret tree size differs from the ratchet tree's", nil)
	}
	ctxBytes := ctx.Bytes()
	st := &epochState{
		ctx:        ctx,
		ctxBytes:   ctxBytes,
		extensions: ctx.Extensions,
		tree:       tree,
		priv:       priv,
		secrets:    secrets,
		interim:    interim,
		framer: &framer{
			cs:               cs,
			groupID:          ctx.GroupID,
			epoch:            ctx.Epoch,
			groupContext:     ctxBytes,
			membershipKey:    secrets.MembershipKey(),
			senderDataSecret: bytes.Clone(secrets.SenderDataSecret()),
			secretTree:       secretTree,
		},
	}
	g.state = st

	// Cached proposals, checked for duplicates in linear time.
	refs := make(map[string]struct{})
	if !wire.ReadVector(&s, func(s *cryptobyte.String) bool {
		var c cachedProposal
		var ref []byte
		c.proposal = new(Proposal)
		if !wire.ReadVarintBytes(s, &ref) || len(ref) != cs.HashSize() ||
			!c.sender.unmarshal(s) || !c.proposal.unmarshal(s) {
			return false
		}
		c.ref = ref
		if _, dup := refs[string(ref)]; dup {
			return false
		}
		refs[string(ref)] = struct{}{}
		st.proposals = append(st.proposals, c)
		return true
	}) {
		return nil, fail("cached proposals", nil)
	}

	// Private keys of pending Update proposals.
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

	// The ReInit proposal of the commit that started this epoch.
	var hasReInit bool
	if !wire.ReadOptional(&s, &hasReInit) {
		return nil, fail("reinit", nil)
	}
	if hasReInit {
		var p Proposal
		if !p.unmarshal(&s) || p.Type != ProposalTypeReInit || p.ReInit == nil {
			return nil, fail("reinit", nil)
		}
		g.reinit = p.ReInit
	}

	// Resumption PSKs of earlier epochs, oldest first.
	if !wire.ReadVector(&s, func(s *cryptobyte.String) bool {
		var r resumptionPSK
		if !s.ReadUint64(&r.epoch) || r.epoch >= ctx.Epoch || !d.secret(s, &r.secret) {
			return false
		}
		if n := len(g.resumption); n > 0 && r.epoch <= g.resumption[n-1].epoch {
			return false
		}
		g.resumption = append(g.resumption, r)
		return true
	}) {
		return nil, fail("resumption PSKs", nil)
	}

	// Past epochs, oldest first.
	curNodes := splitNodes(treeBody)
	for uint32(len(curNodes)) < tree.Width() {
		curNodes = append(curNodes, []byte{0})
	}
	var pastErr error
	if !wire.ReadVector(&s, func(s *cryptobyte.String) bool {
		p, err := d.pastEpoch(s, &ctx, curNodes)
		if err != nil {
			pastErr = err
			return false
		}
		if n := len(g.past); n > 0 && p.epoch <= g.past[n-1].epoch {
			pastErr = errors.New("past epochs out of order")
			return false
		}
		g.past = append(g.past, p)
		return true
	}) {
		return nil, fail("past epochs", pastErr)
	}
	if !s.Empty() {
		return nil, fail("trailing data", wire.ErrTrailingData)
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

// pastEpoch reads one PastEpoch of a state whose current GroupContext is
// cur and whose current tree's node encodings are curNodes.
func (d *stateDecoder) pastEpoch(s *cryptobyte.String, cur *GroupContext, curNodes [][]byte) (*pastEpoch, error) {
	cs := d.cs
	var ctxRaw, sdSecret, stRaw []byte
	var leafCount uint32
	var changes, tail cryptobyte.String
	if !wire.ReadVarintBytes(s, &ctxRaw) || !d.secret(s, &sdSecret) ||
		!wire.ReadVarintBytes(s, &stRaw) || !s.ReadUint32(&leafCount) ||
		!wire.ReadVarintPrefixed(s, &changes) || !wire.ReadVarintPrefixed(s, &tail) {
		return nil, wire.ErrMalformed
	}
	d.temp = append(d.temp, stRaw)
	ctx, err := keyschedule.ParseGroupContext(ctxRaw)
	if err != nil {
		return nil, err
	}
	if ctx.CipherSuite != cs || !bytes.Equal(ctx.GroupID, cur.GroupID) || ctx.Epoch >= cur.Epoch {
		return nil, errors.New("group context does not belong to the group")
	}
	if leafCount == 0 || leafCount&(leafCount-1) != 0 || leafCount > 1<<30 {
		return nil, errors.New("leaf count")
	}
	// The past tree's nodes: the current tree's, up to the past width, with
	// the changes applied, then the tail. Every node beyond the current
	// tree is in the input, so the work is bounded by the input's size.
	width := treemath.NodeWidth(leafCount)
	nodes := slices.Clone(curNodes[:min(uint64(width), uint64(len(curNodes)))])
	last := -1
	for !changes.Empty() {
		var i uint32
		if !changes.ReadUint32(&i) || uint64(i) >= uint64(len(nodes)) || int64(i) <= int64(last) {
			return nil, wire.ErrMalformed
		}
		last = int(i)
		start := changes
		if !skipNode(&changes) {
			return nil, wire.ErrMalformed
		}
		enc := start[:len(start)-len(changes)]
		// A change equal to the current node is never written.
		if bytes.Equal(enc, nodes[i]) {
			return nil, wire.ErrMalformed
		}
		nodes[i] = enc
	}
	if len(tail) > 0 {
		if uint64(len(nodes)) != uint64(len(curNodes)) {
			return nil, wire.ErrMalformed
		}
		for !tail.Empty() {
			start := tail
			if !skipNode(&tail) || uint64(len(nodes)) >= uint64(width) {
				return nil, wire.ErrMalformed
			}
			nodes = append(nodes, start[:len(start)-len(tail)])
		}
		if isBlankEncoding(nodes[len(nodes)-1]) {
			return nil, wire.ErrMalformed
		}
	}
	tree, err := treekem.ParseTree(cs, treeEncoding(nodes))
	if err != nil {
		return nil, err
	}
	if tree.LeafCount() != leafCount {
		return nil, errors.New("past tree size")
	}
	st, err := keyschedule.ParseSecretTree(stRaw)
	if err != nil {
		return nil, err
	}
	d.trees = append(d.trees, st)
	if st.LeafCount() != leafCount {
		return nil, errors.New("past secret tree size differs from its ratchet tree's")
	}
	ctxBytes := ctx.Bytes()
	return &pastEpoch{
		epoch:    ctx.Epoch,
		tree:     tree,
		ctxBytes: ctxBytes,
		framer: &framer{
			cs:               cs,
			groupID:          ctx.GroupID,
			epoch:            ctx.Epoch,
			groupContext:     ctxBytes,
			senderDataSecret: sdSecret,
			secretTree:       st,
		},
	}, nil
}

// readRaw reads a varint-prefixed field into body and sets raw to the
// whole field, prefix included, without copying.
func readRaw(s *cryptobyte.String, raw *[]byte, body *cryptobyte.String) bool {
	start := *s
	if !wire.ReadVarintPrefixed(s, body) {
		return false
	}
	*raw = start[:len(start)-len(*s)]
	return true
}

// skipNode reads past one optional<Node>.
func skipNode(s *cryptobyte.String) bool {
	var present bool
	if !wire.ReadOptional(s, &present) {
		return false
	}
	if !present {
		return true
	}
	var typ uint8
	if !s.ReadUint8(&typ) {
		return false
	}
	switch treekem.NodeType(typ) {
	case treekem.NodeTypeLeaf:
		var l treekem.LeafNode
		return l.Unmarshal(s)
	case treekem.NodeTypeParent:
		var p treekem.ParentNode
		return p.Unmarshal(s)
	}
	return false
}

// keyPackagePrivateVersion is the version of the encoding written by
// [KeyPackagePrivate.Bytes].
const keyPackagePrivateVersion = 1

// Bytes returns kp with its private keys in a versioned binary form, for a
// [KeyStore]; [ParseKeyPackagePrivate] restores it. It must be kept secret.
//
//	struct {
//	    uint16 version = 1;
//	    KeyPackage key_package;
//	    opaque init_key<V>;
//	    opaque encryption_key<V>;
//	    opaque signature_key<V>;
//	} KeyPackagePrivateState;
func (kp *KeyPackagePrivate) Bytes() ([]byte, error) {
	if kp == nil || kp.KeyPackage == nil || kp.InitKey == nil || kp.EncryptionKey == nil || kp.SignatureKey == nil {
		return nil, errors.New("mls: incomplete KeyPackagePrivate")
	}
	return wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddUint16(keyPackagePrivateVersion)
		kp.KeyPackage.marshal(b)
		wire.AddVarintBytes(b, kp.InitKey.Bytes())
		wire.AddVarintBytes(b, kp.EncryptionKey.Bytes())
		wire.AddVarintBytes(b, kp.SignatureKey.Bytes())
	})
}

// ParseKeyPackagePrivate restores a KeyPackage with its private keys from
// the encoding of [KeyPackagePrivate.Bytes]. It checks that each private
// key matches its public key in the KeyPackage. Errors match
// [ErrInvalidState].
func ParseKeyPackagePrivate(data []byte) (*KeyPackagePrivate, error) {
	var (
		version                 uint16
		kp                      KeyPackage
		initRaw, encRaw, sigRaw []byte
	)
	err := wire.Parse(data, func(s *cryptobyte.String) bool {
		return s.ReadUint16(&version) && version == keyPackagePrivateVersion && kp.unmarshal(s) &&
			wire.ReadVarintBytes(s, &initRaw) && wire.ReadVarintBytes(s, &encRaw) && wire.ReadVarintBytes(s, &sigRaw)
	})
	defer clear(initRaw)
	defer clear(encRaw)
	defer clear(sigRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: key package private keys: %w", ErrInvalidState, err)
	}
	cs := kp.CipherSuite
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: %w: cipher suite %v", ErrInvalidState, ErrUnsupported, cs)
	}
	out := &KeyPackagePrivate{KeyPackage: &kp}
	var errs []error
	out.InitKey, err = cs.NewPrivateKey(initRaw)
	errs = append(errs, err)
	out.EncryptionKey, err = cs.NewPrivateKey(encRaw)
	errs = append(errs, err)
	out.SignatureKey, err = cs.NewSignaturePrivateKey(sigRaw)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: key package private keys: %w", ErrInvalidState, err)
	}
	if !bytes.Equal(out.InitKey.PublicKey(), kp.InitKey) ||
		!bytes.Equal(out.EncryptionKey.PublicKey(), kp.LeafNode.EncryptionKey) ||
		!bytes.Equal(out.SignatureKey.PublicKey(), kp.LeafNode.SignatureKey) {
		return nil, fmt.Errorf("%w: key package private keys do not match the key package", ErrInvalidState)
	}
	return out, nil
}

// MarshalMergedState returns the state the group would have after
// [Group.Merge] of s (or [Group.MergePendingCommit] of the pending commit
// holding s), without merging it and without changing g. Like every state
// it is secret. [SavePendingCommit] is the way to persist a commit before
// sending it with a record store: it keeps the current epoch current until
// the delivery service accepted the commit, and [Group.RecoveredCommit]
// gives the commit back after a crash. With whole states, save this one
// aside (for instance under the group ID and s.Epoch()) before sending;
// after a restart, if the delivery service accepted the commit, load it
// with [LoadGroup] instead of the previous state.
func (g *Group) MarshalMergedState(s *StagedCommit) ([]byte, error) {
	if s == nil || s.state == nil {
		return nil, errors.New("mls: no new epoch to marshal")
	}
	if s.fromEpoch != g.state.ctx.Epoch || !g.active {
		return nil, fmt.Errorf("%w: staged for epoch %d, group is at %d", ErrWrongEpoch, s.fromEpoch, g.state.ctx.Epoch)
	}
	if err := g.needTree(); err != nil {
		return nil, err
	}
	old := g.state
	view := *g
	view.past = nil
	if n := g.cfg.pastEpochs(); n > 0 {
		view.past = append(append(view.past, g.past...), &pastEpoch{epoch: old.ctx.Epoch, framer: old.framer, tree: old.tree, ctxBytes: old.ctxBytes})
		if len(view.past) > n {
			view.past = view.past[len(view.past)-n:]
		}
	}
	view.resumption = append(append([]resumptionPSK(nil), g.resumption...), resumptionPSK{epoch: old.ctx.Epoch, secret: old.secrets.ResumptionPSK()})
	if n := g.cfg.resumptionEpochs(); len(view.resumption) > n {
		view.resumption = view.resumption[len(view.resumption)-n:]
	}
	view.state = s.state
	view.pendingUpdates = nil
	if s.ReInit != nil {
		view.reinit = s.ReInit
	}
	return view.MarshalState()
}
