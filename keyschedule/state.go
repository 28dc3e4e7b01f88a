package keyschedule

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
)

// secretTreeStateVersion is the version byte of the SecretTree state
// encoding.
const secretTreeStateVersion = 1

// Bytes returns the state of the tree in a versioned binary form, for
// persistence; [ParseSecretTree] restores it. The encoding holds every secret
// and key the tree still holds, so it must be kept secret, and it no longer
// holds anything the tree has erased. Storing it replaces the previous state:
// a stale copy would bring consumed keys back.
//
// The form, in the TLS presentation language of RFC 9420, Section 2.1, is:
//
//	struct {
//	    uint8 version = 1;
//	    CipherSuite cipher_suite;
//	    uint32 leaf_count;
//	    uint32 max_forward_distance;
//	    uint32 out_of_order_tolerance;
//	    NodeSecret nodes<V>;     // ordered by node index
//	    SenderRatchets senders<V>; // ordered by leaf index
//	} SecretTreeState;
//	struct { uint32 node; opaque secret<V>; } NodeSecret;
//	struct { uint32 leaf; Ratchet handshake; Ratchet application; } SenderRatchets;
//	struct {
//	    uint32 generation;
//	    optional<opaque secret<V>>;  // absent after generation 2^32-1
//	    SkippedKey skipped<V>;       // ordered by generation
//	} Ratchet;
//	struct { uint32 generation; opaque key<V>; opaque nonce<V>; } SkippedKey;
func (t *SecretTree) Bytes() []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint8(secretTreeStateVersion)
		b.AddUint16(uint16(t.suite))
		b.AddUint32(t.leafCount)
		b.AddUint32(t.maxForward)
		b.AddUint32(t.tolerance)
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, x := range slices.Sorted(maps.Keys(t.nodes)) {
				b.AddUint32(uint32(x))
				wire.AddVarintBytes(b, t.nodes[x])
			}
		})
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, l := range slices.Sorted(maps.Keys(t.senders)) {
				s := t.senders[l]
				b.AddUint32(l)
				s.handshake.marshal(b)
				s.application.marshal(b)
			}
		})
	})
}

func (r *ratchet) marshal(b *cryptobyte.Builder) {
	b.AddUint32(r.generation)
	wire.AddOptional(b, r.secret != nil, func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, r.secret)
	})
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for _, k := range r.skipped {
			b.AddUint32(k.Generation)
			wire.AddVarintBytes(b, k.Key)
			wire.AddVarintBytes(b, k.Nonce)
		}
	})
}

// ParseSecretTree restores a SecretTree from the state returned by
// [SecretTree.Bytes]. It checks the state for consistency: every secret and
// key has its suite's size, and every leaf is either started or covered by
// exactly one node secret. Errors match [ErrMalformed], or
// [hpke.ErrUnsupportedCipherSuite].
func ParseSecretTree(b []byte) (*SecretTree, error) {
	t := &SecretTree{
		nodes:   make(map[treemath.NodeIndex][]byte),
		senders: make(map[uint32]*senderRatchets),
	}
	var version uint8
	var suite uint16
	s := cryptobyte.String(b)
	if !s.ReadUint8(&version) || version != secretTreeStateVersion || !s.ReadUint16(&suite) {
		return nil, fmt.Errorf("%w: secret tree state: unknown version", ErrMalformed)
	}
	t.suite = hpke.CipherSuite(suite)
	if !t.suite.Supported() {
		return nil, fmt.Errorf("keyschedule: secret tree state: %w", hpke.ErrUnsupportedCipherSuite)
	}
	err := wire.Parse(s, t.unmarshalState)
	if err == nil {
		err = t.checkCoverage()
	}
	if err != nil {
		t.Erase()
		return nil, fmt.Errorf("%w: secret tree state: %w", ErrMalformed, err)
	}
	return t, nil
}

// unmarshalState reads the state after the version and cipher suite.
func (t *SecretTree) unmarshalState(s *cryptobyte.String) bool {
	nh := t.suite.HashSize()
	if !s.ReadUint32(&t.leafCount) || t.leafCount == 0 || t.leafCount > 1<<31 ||
		!s.ReadUint32(&t.maxForward) || !s.ReadUint32(&t.tolerance) {
		return false
	}
	width := treemath.NodeWidth(t.leafCount)
	first, last := true, uint32(0)
	if !wire.ReadVector(s, func(s *cryptobyte.String) bool {
		var x uint32
		var secret []byte
		if !s.ReadUint32(&x) || x >= width || (!first && x <= last) ||
			!wire.ReadVarintBytes(s, &secret) || len(secret) != nh {
			return false
		}
		first, last = false, x
		t.nodes[treemath.NodeIndex(x)] = secret
		return true
	}) {
		return false
	}
	first = true
	return wire.ReadVector(s, func(s *cryptobyte.String) bool {
		var l uint32
		sr := new(senderRatchets)
		if !s.ReadUint32(&l) || l >= t.leafCount || (!first && l <= last) ||
			!sr.handshake.unmarshal(s, t) || !sr.application.unmarshal(s, t) {
			return false
		}
		first, last = false, l
		t.senders[l] = sr
		return true
	})
}

func (r *ratchet) unmarshal(s *cryptobyte.String, t *SecretTree) bool {
	cs := t.suite
	var present bool
	if !s.ReadUint32(&r.generation) || !wire.ReadOptional(s, &present) {
		return false
	}
	if present {
		if !wire.ReadVarintBytes(s, &r.secret) || len(r.secret) != cs.HashSize() {
			return false
		}
	} else if r.generation != math.MaxUint32 {
		return false
	}
	return wire.ReadVector(s, func(s *cryptobyte.String) bool {
		var k MessageKey
		if !s.ReadUint32(&k.Generation) || k.Generation >= r.generation ||
			(len(r.skipped) > 0 && k.Generation <= r.skipped[len(r.skipped)-1].Generation) ||
			!wire.ReadVarintBytes(s, &k.Key) || len(k.Key) != cs.AEADKeySize() ||
			!wire.ReadVarintBytes(s, &k.Nonce) || len(k.Nonce) != cs.AEADNonceSize() ||
			len(r.skipped) >= int(t.tolerance) {
			return false
		}
		r.skipped = append(r.skipped, k)
		return true
	})
}

// checkCoverage checks that the node secrets and started leaves cover every
// leaf exactly once, in time linear in their number.
func (t *SecretTree) checkCoverage() error {
	type span struct{ lo, hi uint64 } // node indexes, inclusive
	maxNode := 2 * uint64(t.leafCount-1)
	spans := make([]span, 0, len(t.nodes)+len(t.senders))
	for x := range t.nodes {
		half := uint64(1)<<treemath.Level(x) - 1
		lo, hi := uint64(x)-min(half, uint64(x)), min(uint64(x)+half, maxNode)
		spans = append(spans, span{lo, hi})
	}
	for l := range t.senders {
		spans = append(spans, span{2 * uint64(l), 2 * uint64(l)})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	var leaves uint64
	for i, sp := range spans {
		if i > 0 && sp.lo <= spans[i-1].hi {
			return fmt.Errorf("overlapping secrets at node %d", sp.lo)
		}
		if sp.lo > sp.hi {
			return fmt.Errorf("node beyond the tree at %d", sp.lo)
		}
		// Leaves are the even node indexes; lo and hi are even.
		leaves += (sp.hi-sp.lo)/2 + 1
	}
	if leaves != uint64(t.leafCount) {
		return fmt.Errorf("secrets cover %d of %d leaves", leaves, t.leafCount)
	}
	return nil
}

// epochSecretsStateVersion is the version byte of the EpochSecrets
// encoding.
const epochSecretsStateVersion = 1

// Bytes returns the secrets in a versioned binary form, for persistence;
// [ParseEpochSecrets] restores them. The encoding must be kept secret. It
// omits what has been erased: the encryption secret once moved into a
// [SecretTree], and the next init secret after [EpochSecrets.EraseInit].
//
// The form, in the TLS presentation language of RFC 9420, Section 2.1, is:
//
//	struct {
//	    uint8 version = 1;
//	    CipherSuite cipher_suite;
//	    opaque sender_data_secret<V>;
//	    optional<opaque encryption_secret<V>>;
//	    opaque exporter_secret<V>;
//	    opaque external_secret<V>;
//	    opaque confirmation_key<V>;
//	    opaque membership_key<V>;
//	    opaque resumption_psk<V>;
//	    opaque epoch_authenticator<V>;
//	    optional<opaque init_secret<V>>;
//	} EpochSecretsState;
func (s *EpochSecrets) Bytes() []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint8(epochSecretsStateVersion)
		b.AddUint16(uint16(s.suite))
		wire.AddVarintBytes(b, s.senderData)
		wire.AddOptional(b, s.encryption != nil, func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, s.encryption) })
		for _, v := range [][]byte{s.exporter, s.external, s.confirmation, s.membership, s.resumption, s.epochAuthenticator} {
			wire.AddVarintBytes(b, v)
		}
		wire.AddOptional(b, s.init != nil, func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, s.init) })
	})
}

// ParseEpochSecrets restores the secrets returned by [EpochSecrets.Bytes].
// Every secret must be KDF.Nh long. Errors match [ErrMalformed], or
// [hpke.ErrUnsupportedCipherSuite].
func ParseEpochSecrets(b []byte) (*EpochSecrets, error) {
	var version uint8
	var suite uint16
	in := cryptobyte.String(b)
	if !in.ReadUint8(&version) || version != epochSecretsStateVersion || !in.ReadUint16(&suite) {
		return nil, fmt.Errorf("%w: epoch secrets: unknown version", ErrMalformed)
	}
	s := &EpochSecrets{suite: hpke.CipherSuite(suite)}
	if !s.suite.Supported() {
		return nil, fmt.Errorf("keyschedule: epoch secrets: %w", hpke.ErrUnsupportedCipherSuite)
	}
	nh := s.suite.HashSize()
	secret := func(in *cryptobyte.String, out *[]byte) bool {
		return wire.ReadVarintBytes(in, out) && len(*out) == nh
	}
	optional := func(in *cryptobyte.String, out *[]byte) bool {
		var present bool
		return wire.ReadOptional(in, &present) && (!present || secret(in, out))
	}
	err := wire.Parse(in, func(in *cryptobyte.String) bool {
		return secret(in, &s.senderData) && optional(in, &s.encryption) &&
			secret(in, &s.exporter) && secret(in, &s.external) && secret(in, &s.confirmation) &&
			secret(in, &s.membership) && secret(in, &s.resumption) && secret(in, &s.epochAuthenticator) &&
			optional(in, &s.init)
	})
	if err != nil {
		s.Erase()
		return nil, fmt.Errorf("%w: epoch secrets: %w", ErrMalformed, err)
	}
	return s, nil
}
