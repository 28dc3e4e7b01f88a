package keyschedule

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
)

// Errors of the secret tree. Callers match them with [errors.Is].
var (
	// ErrInvalidLeaf is returned for a leaf index outside the tree.
	ErrInvalidLeaf = errors.New("keyschedule: leaf index outside the secret tree")
	// ErrKeyConsumed is returned for a generation whose key has already
	// been fetched, or was deleted because it fell out of the out-of-order
	// window (RFC 9420, Section 9.2). Nothing can derive it again.
	ErrKeyConsumed = errors.New("keyschedule: key already consumed or deleted")
	// ErrTooFarAhead is returned for a generation further ahead of a
	// ratchet than [Config.MaxForwardDistance]. Nothing is derived.
	ErrTooFarAhead = errors.New("keyschedule: generation too far ahead of the ratchet")
)

// Defaults of [Config].
const (
	// DefaultMaxForwardDistance is the default for
	// [Config.MaxForwardDistance].
	DefaultMaxForwardDistance = 1000
	// DefaultOutOfOrderTolerance is the default for
	// [Config.OutOfOrderTolerance].
	DefaultOutOfOrderTolerance = 32
)

// Config bounds the work and memory that out-of-order messages may cost a
// [SecretTree]. A nil *Config selects the defaults.
type Config struct {
	// MaxForwardDistance is how many generations past the next expected
	// one a ratchet will skip to serve a request. A request further ahead
	// fails with [ErrTooFarAhead] before any derivation. Zero selects
	// DefaultMaxForwardDistance; a negative value accepts only the next
	// expected generation.
	MaxForwardDistance int
	// OutOfOrderTolerance is how many keys of skipped generations each
	// ratchet keeps for messages that arrive late; the oldest are deleted
	// first. Zero selects DefaultOutOfOrderTolerance; a negative value
	// keeps none.
	OutOfOrderTolerance int
}

func (c *Config) limits() (maxForward, tolerance uint32) {
	maxForward, tolerance = DefaultMaxForwardDistance, DefaultOutOfOrderTolerance
	if c == nil {
		return
	}
	clamp := func(v int, def uint32) uint32 {
		switch {
		case v == 0:
			return def
		case v < 0:
			return 0
		case uint64(v) > math.MaxUint32:
			return math.MaxUint32
		default:
			return uint32(v)
		}
	}
	return clamp(c.MaxForwardDistance, maxForward), clamp(c.OutOfOrderTolerance, tolerance)
}

// RatchetType selects one of the two ratchets of a sender (RFC 9420,
// Section 9).
type RatchetType uint8

// The two ratchets of each sender.
const (
	// Handshake is the ratchet for proposals and commits sent as
	// PrivateMessage.
	Handshake RatchetType = 1
	// Application is the ratchet for application messages.
	Application RatchetType = 2
)

// String returns "handshake" or "application".
func (r RatchetType) String() string {
	switch r {
	case Handshake:
		return "handshake"
	case Application:
		return "application"
	}
	return fmt.Sprintf("RatchetType(%d)", uint8(r))
}

// MessageKey is one key and nonce of a sender ratchet, for the AEAD that
// protects one PrivateMessage (RFC 9420, Section 9.1). It must be kept secret
// and used for one message only; its holder erases it after use.
type MessageKey struct {
	// Generation is the position of the key in its ratchet.
	Generation uint32
	// Key is ratchet_key_[N]_[Generation], AEAD.Nk bytes.
	Key []byte
	// Nonce is ratchet_nonce_[N]_[Generation], AEAD.Nn bytes, before the
	// reuse guard is applied (RFC 9420, Section 6.3.1).
	Nonce []byte
}

// Erase overwrites the key and nonce with zeros.
func (k *MessageKey) Erase() {
	erase(k.Key)
	erase(k.Nonce)
	k.Key, k.Nonce = nil, nil
}

// String returns the generation with the key redacted.
func (k MessageKey) String() string {
	return fmt.Sprintf("MessageKey{Generation: %d, [redacted]}", k.Generation)
}

// GoString is like String, so that %#v does not print secrets either.
func (k MessageKey) GoString() string { return k.String() }

// SecretTree is the secret tree of one epoch (RFC 9420, Section 9): it derives
// from the encryption secret a handshake and an application ratchet for each
// leaf, and the keys and nonces of those ratchets.
//
// Node secrets are derived lazily: the first key of a leaf costs O(log n)
// derivations, and each parent secret is erased as soon as both its children
// are derived. Each ratchet secret is erased as soon as the next one is
// derived, and each key is erased from the tree when it is fetched, so that
// fetching it again fails with [ErrKeyConsumed] (RFC 9420, Section 9.2).
//
// A SecretTree must be kept secret. It is not safe for concurrent use.
type SecretTree struct {
	suite      hpke.CipherSuite
	leafCount  uint32
	maxForward uint32
	tolerance  uint32
	// nodes holds the secrets of the nodes not yet derived into their
	// children: together they cover every leaf whose ratchets have not
	// been started.
	nodes map[treemath.NodeIndex][]byte
	// senders holds the ratchets of the leaves that have been started.
	senders map[uint32]*senderRatchets
	// changed holds the node indexes whose entry (see [SecretTree.Entry])
	// changed since the last [SecretTree.ClearChanges], if tracking.
	changed map[treemath.NodeIndex]struct{}
}

type senderRatchets struct {
	handshake, application ratchet
}

// ratchet is one sender ratchet (RFC 9420, Section 9.1).
type ratchet struct {
	// generation is the generation of secret: the next key the ratchet
	// will derive. Every key of a lower generation has been consumed,
	// deleted, or is in skipped.
	generation uint32
	// secret is ratchet_secret_[N]_[generation], or nil once the last
	// generation (2^32-1) has been derived.
	secret []byte
	// skipped holds the keys of generations below generation that were
	// skipped over and not yet fetched, at most the tree's tolerance,
	// ordered by generation.
	skipped []MessageKey
}

// NewSecretTree returns the secret tree of a group of leafCount leaves whose
// epoch has the given encryption secret (the root of the tree, KDF.Nh bytes).
// It copies encryptionSecret; the caller should erase its own copy, as
// [EpochSecrets.SecretTree] does. A nil cfg selects the defaults.
func NewSecretTree(cs hpke.CipherSuite, encryptionSecret []byte, leafCount uint32, cfg *Config) (*SecretTree, error) {
	if !cs.Supported() {
		return nil, hpke.ErrUnsupportedCipherSuite
	}
	if len(encryptionSecret) != cs.HashSize() {
		return nil, fmt.Errorf("%w: encryption secret of %d bytes", ErrInvalidSecret, len(encryptionSecret))
	}
	if leafCount == 0 || leafCount > 1<<31 {
		return nil, fmt.Errorf("keyschedule: secret tree of %d leaves: %w", leafCount, ErrInvalidLeaf)
	}
	maxForward, tolerance := cfg.limits()
	return &SecretTree{
		suite:      cs,
		leafCount:  leafCount,
		maxForward: maxForward,
		tolerance:  tolerance,
		nodes:      map[treemath.NodeIndex][]byte{treemath.Root(leafCount): clone(encryptionSecret)},
		senders:    make(map[uint32]*senderRatchets),
	}, nil
}

// LeafCount returns the number of leaves of the tree.
func (t *SecretTree) LeafCount() uint32 { return t.leafCount }

// Key fetches the key of the given generation of a leaf's ratchet, for
// decrypting a message, and deletes it from the tree: the caller owns the
// returned key and erases it after use. Fetching a generation ahead of the
// ratchet skips over the generations in between, keeping their keys within
// the tree's out-of-order tolerance.
//
// It returns [ErrInvalidLeaf] for a leaf outside the tree, [ErrKeyConsumed]
// for a key already fetched or deleted, and [ErrTooFarAhead] for a
// generation beyond the maximum forward distance. On error nothing is
// consumed and the tree is unchanged.
//
// A receiver that has not yet authenticated the message should use
// [SecretTree.UseKey], so that a forged message consumes nothing.
func (t *SecretTree) Key(leaf uint32, typ RatchetType, generation uint32) (MessageKey, error) {
	r, start, err := t.ratchetFor(leaf, typ, generation)
	if err != nil {
		return MessageKey{}, err
	}
	k, p, err := r.fetch(t, generation)
	if err != nil {
		start.discard()
		return MessageKey{}, t.errorf(leaf, typ, generation, err)
	}
	start.commit(t)
	r.commit(t, p)
	t.markChanged(treemath.LeafIndex(leaf).Node())
	return k, nil
}

// NextKey fetches the next key of a leaf's ratchet, for encrypting a message
// from that leaf, and deletes it from the tree. The caller owns the returned
// key, uses it for one message only, and erases it.
func (t *SecretTree) NextKey(leaf uint32, typ RatchetType) (MessageKey, error) {
	r, err := t.ratchet(leaf, typ)
	if err != nil {
		return MessageKey{}, err
	}
	if r.secret == nil {
		return MessageKey{}, t.errorf(leaf, typ, r.generation, ErrKeyConsumed)
	}
	return t.Key(leaf, typ, r.generation)
}

// UseKey calls use with the key of the given generation of a leaf's ratchet
// and deletes the key, as [SecretTree.Key] does, only if use returns nil.
// If use returns an error, for instance because the message does not
// decrypt, the tree is left unchanged (a leaf whose ratchets were not
// started stays so: its node secrets are derived on a scratch copy) and
// UseKey returns that error. use must not keep or modify the key.
//
// UseKey returns the errors of [SecretTree.Key] without calling use.
func (t *SecretTree) UseKey(leaf uint32, typ RatchetType, generation uint32, use func(MessageKey) error) error {
	r, start, err := t.ratchetFor(leaf, typ, generation)
	if err != nil {
		return err
	}
	k, p, err := r.fetch(t, generation)
	if err != nil {
		start.discard()
		return t.errorf(leaf, typ, generation, err)
	}
	if err := use(k); err != nil {
		p.discard()
		start.discard()
		k.Erase()
		return err
	}
	start.commit(t)
	r.commit(t, p)
	t.markChanged(treemath.LeafIndex(leaf).Node())
	k.Erase()
	return nil
}

// Erase overwrites every secret and key held by the tree with zeros, for
// when the epoch is discarded. The tree cannot be used afterwards.
func (t *SecretTree) Erase() {
	for x, s := range t.nodes {
		erase(s)
		delete(t.nodes, x)
	}
	for l, s := range t.senders {
		s.handshake.erase()
		s.application.erase()
		delete(t.senders, l)
	}
}

// String returns "[redacted]".
func (t *SecretTree) String() string { return redacted }

// GoString returns "[redacted]".
func (t *SecretTree) GoString() string { return redacted }

func (t *SecretTree) errorf(leaf uint32, typ RatchetType, generation uint32, err error) error {
	return fmt.Errorf("keyschedule: leaf %d %v generation %d: %w", leaf, typ, generation, err)
}

// ratchet returns the ratchet of the given type of a leaf, starting the
// leaf's ratchets if needed.
func (t *SecretTree) ratchet(leaf uint32, typ RatchetType) (*ratchet, error) {
	r, start, err := t.ratchetFor(leaf, typ, 0)
	if err != nil {
		return nil, err
	}
	start.commit(t)
	return r, nil
}

// ratchetFor returns the ratchet of the given type of a leaf. If the leaf's
// ratchets are not started yet, they are derived without changing t, and
// start is the change that starting them makes: the caller applies it with
// start.commit or drops it with start.discard (both accept nil). It refuses
// with ErrTooFarAhead, before deriving anything, a generation too far ahead
// of an unstarted leaf.
func (t *SecretTree) ratchetFor(leaf uint32, typ RatchetType, generation uint32) (r *ratchet, start *pendingStart, err error) {
	if leaf >= t.leafCount {
		return nil, nil, fmt.Errorf("keyschedule: leaf %d of %d: %w", leaf, t.leafCount, ErrInvalidLeaf)
	}
	if typ != Handshake && typ != Application {
		return nil, nil, fmt.Errorf("keyschedule: unknown ratchet type %d", typ)
	}
	s, started := t.senders[leaf]
	if !started {
		if generation > t.maxForward {
			return nil, nil, t.errorf(leaf, typ, generation, ErrTooFarAhead)
		}
		if start, err = t.deriveSender(leaf); err != nil {
			return nil, nil, err
		}
		s = start.ratchets
	}
	if typ == Handshake {
		return &s.handshake, start, nil
	}
	return &s.application, start, nil
}

// pendingStart is the change that starting a leaf's ratchets makes to the
// tree: the held node secret it consumes, the secrets of the copath nodes
// derived on the way down, and the leaf's ratchets.
type pendingStart struct {
	leaf     uint32
	consumed treemath.NodeIndex
	derived  map[treemath.NodeIndex][]byte
	ratchets *senderRatchets
}

// commit applies p to t: it erases the consumed node secret and keeps the
// derived ones and the ratchets.
func (p *pendingStart) commit(t *SecretTree) {
	if p == nil {
		return
	}
	erase(t.nodes[p.consumed])
	delete(t.nodes, p.consumed)
	t.markChanged(p.consumed, treemath.LeafIndex(p.leaf).Node())
	for x, s := range p.derived {
		t.nodes[x] = s
		t.markChanged(x)
	}
	t.senders[p.leaf] = p.ratchets
}

// discard erases everything p derived.
func (p *pendingStart) discard() {
	if p == nil {
		return
	}
	for _, s := range p.derived {
		erase(s)
	}
	p.ratchets.handshake.erase()
	p.ratchets.application.erase()
}

// deriveSender derives the ratchets of leaf, which are not started, from
// the tree (RFC 9420, Section 9), without changing t: it descends from the
// lowest ancestor whose secret is held, deriving both children of each node
// on the way, then derives the two ratchet secrets from the leaf's secret.
// Committing the result erases that ancestor's secret and keeps the
// secrets of the nodes beside the path; the secrets on the path itself are
// erased here as soon as they are used.
func (t *SecretTree) deriveSender(leaf uint32) (*pendingStart, error) {
	if t.nodes == nil {
		return nil, fmt.Errorf("keyschedule: secret tree: %w", ErrErased)
	}
	cs, n := t.suite, t.leafCount
	target := treemath.LeafIndex(leaf).Node()
	x := target
	for {
		if _, ok := t.nodes[x]; ok {
			break
		}
		if x == treemath.Root(n) {
			return nil, fmt.Errorf("keyschedule: secret tree: leaf %d: %w", leaf, ErrErased)
		}
		x = treemath.Parent(x, n)
	}
	p := &pendingStart{leaf: leaf, consumed: x, derived: map[treemath.NodeIndex][]byte{}}
	secret, owned := t.nodes[x], false
	for x != target {
		left, right := treemath.Left(x), treemath.Right(x, n)
		l := cs.ExpandWithLabel(secret, "tree", []byte("left"), cs.HashSize())
		r := cs.ExpandWithLabel(secret, "tree", []byte("right"), cs.HashSize())
		if owned {
			erase(secret)
		}
		if target < x {
			x, secret, p.derived[right] = left, l, r
		} else {
			x, secret, p.derived[left] = right, r, l
		}
		owned = true
	}
	p.ratchets = &senderRatchets{
		handshake:   ratchet{secret: cs.ExpandWithLabel(secret, "handshake", nil, cs.HashSize())},
		application: ratchet{secret: cs.ExpandWithLabel(secret, "application", nil, cs.HashSize())},
	}
	if owned {
		erase(secret)
	}
	return p, nil
}

// pendingAdvance is the change a fetch makes to a ratchet, applied by commit
// or dropped by discard.
type pendingAdvance struct {
	// remove is the index in skipped of the fetched key, or -1.
	remove int
	// advance reports whether the ratchet moves to generation/secret
	// and appends skipped.
	advance    bool
	generation uint32
	secret     []byte
	skipped    []MessageKey
}

func (p *pendingAdvance) discard() {
	erase(p.secret)
	for i := range p.skipped {
		p.skipped[i].Erase()
	}
}

// fetch derives the key of the given generation without changing r, and
// returns the change that consuming it makes.
func (r *ratchet) fetch(t *SecretTree, generation uint32) (MessageKey, *pendingAdvance, error) {
	if generation < r.generation {
		i, ok := slices.BinarySearchFunc(r.skipped, generation, func(k MessageKey, g uint32) int {
			return cmp.Compare(k.Generation, g)
		})
		if !ok {
			return MessageKey{}, nil, ErrKeyConsumed
		}
		k := r.skipped[i]
		return MessageKey{Generation: k.Generation, Key: clone(k.Key), Nonce: clone(k.Nonce)},
			&pendingAdvance{remove: i}, nil
	}
	if r.secret == nil {
		return MessageKey{}, nil, ErrKeyConsumed
	}
	if generation-r.generation > t.maxForward {
		return MessageKey{}, nil, ErrTooFarAhead
	}
	cs := t.suite
	p := &pendingAdvance{remove: -1, advance: true}
	keepFrom := r.generation
	if generation-r.generation > t.tolerance {
		keepFrom = generation - t.tolerance
	}
	cur, owned := r.secret, false
	for g := r.generation; g < generation; g++ {
		if g >= keepFrom {
			p.skipped = append(p.skipped, ratchetKey(cs, cur, g))
		}
		next := cs.DeriveTreeSecret(cur, "secret", g, cs.HashSize())
		if owned {
			erase(cur)
		}
		cur, owned = next, true
	}
	k := ratchetKey(cs, cur, generation)
	p.generation = generation
	if generation < math.MaxUint32 {
		p.secret = cs.DeriveTreeSecret(cur, "secret", generation, cs.HashSize())
		p.generation = generation + 1
	}
	if owned {
		erase(cur)
	}
	return k, p, nil
}

// ratchetKey derives the key and nonce of generation g from
// ratchet_secret_[N]_[g] (RFC 9420, Section 9.1).
func ratchetKey(cs hpke.CipherSuite, secret []byte, g uint32) MessageKey {
	return MessageKey{
		Generation: g,
		Key:        cs.DeriveTreeSecret(secret, "key", g, cs.AEADKeySize()),
		Nonce:      cs.DeriveTreeSecret(secret, "nonce", g, cs.AEADNonceSize()),
	}
}

// commit applies p to r: it deletes the fetched key, or advances the ratchet
// past it, erasing the ratchet secrets consumed and the skipped keys beyond
// the tolerance, oldest first.
func (r *ratchet) commit(t *SecretTree, p *pendingAdvance) {
	if p.remove >= 0 {
		r.skipped[p.remove].Erase()
		r.skipped = slices.Delete(r.skipped, p.remove, p.remove+1)
	}
	if !p.advance {
		return
	}
	erase(r.secret)
	r.secret, r.generation = p.secret, p.generation
	r.skipped = append(r.skipped, p.skipped...)
	if extra := len(r.skipped) - int(t.tolerance); extra > 0 {
		for i := range extra {
			r.skipped[i].Erase()
		}
		r.skipped = slices.Delete(r.skipped, 0, extra)
	}
}

func (r *ratchet) erase() {
	erase(r.secret)
	r.secret = nil
	for i := range r.skipped {
		r.skipped[i].Erase()
	}
	r.skipped = nil
}
