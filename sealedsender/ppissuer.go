package sealedsender

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/zk/dleq"
	"github.com/microchat/e2ee/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// MasterSecretSize is the minimum size of a [PrivacyPassIssuer]'s master
// secret.
const MasterSecretSize = 32

// IssuerKey is a Privacy Pass issuer's public key for one period, as
// published in a [KeyDirectory].
type IssuerKey struct {
	TokenType TokenType
	// Period is the number of the period the key is used for issuance in:
	// whole key periods since the Unix epoch.
	Period uint64
	// PublicKey is SerializeElement(pkI) (RFC 9497, Section 2.1).
	PublicKey []byte
}

// ID returns the key's token_key_id, SHA-256 of its public key (RFC 9578,
// Section 5). Clients compare key IDs to check that the issuer shows every
// client the same key.
func (k *IssuerKey) ID() [32]byte { return sha256.Sum256(k.PublicKey) }

// KeyDirectory is the list of an issuer's current public keys, which the
// issuer publishes and clients fetch. Its encoding is
//
//	struct {
//	    uint16 token_type;
//	    uint64 period;
//	    opaque public_key<V>;
//	} IssuerKey;
//
//	struct { IssuerKey keys<V>; } KeyDirectory;
type KeyDirectory struct {
	Keys []IssuerKey
}

// Bytes returns the encoding of d.
func (d *KeyDirectory) Bytes() ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, k := range d.Keys {
				b.AddUint16(uint16(k.TokenType))
				b.AddUint64(k.Period)
				wire.AddVarintBytes(b, k.PublicKey)
			}
		})
	})
}

// ParseKeyDirectory decodes a KeyDirectory. Keys of unknown token types
// are kept; [NewPrivacyPassClient] refuses them.
func ParseKeyDirectory(b []byte) (*KeyDirectory, error) {
	d := new(KeyDirectory)
	if err := wire.Parse(b, func(s *cryptobyte.String) bool {
		return wire.ReadVector(s, func(s *cryptobyte.String) bool {
			var k IssuerKey
			if !s.ReadUint16((*uint16)(&k.TokenType)) || !s.ReadUint64(&k.Period) ||
				!wire.ReadVarintBytes(s, &k.PublicKey) {
				return false
			}
			d.Keys = append(d.Keys, k)
			return true
		})
	}); err != nil {
		return nil, malformed("key directory", err)
	}
	return d, nil
}

// Key returns the key of the given token type and period, or nil.
func (d *KeyDirectory) Key(t TokenType, period uint64) *IssuerKey {
	for i := range d.Keys {
		if d.Keys[i].TokenType == t && d.Keys[i].Period == period {
			return &d.Keys[i]
		}
	}
	return nil
}

// Check compares d with another view of the same issuer's keys, for
// example one fetched by another client or over another path, and returns
// an error matching [ErrKeyMismatch] if they list different keys for the
// same token type and period. Periods only one of them lists are ignored.
func (d *KeyDirectory) Check(other *KeyDirectory) error {
	for i := range d.Keys {
		k := &d.Keys[i]
		if o := other.Key(k.TokenType, k.Period); o != nil && !bytes.Equal(o.PublicKey, k.PublicKey) {
			return fmt.Errorf("sealedsender: two keys for %v in period %d: %w", k.TokenType, k.Period, ErrKeyMismatch)
		}
	}
	return nil
}

// periodKey is the issuer's key pair for one period.
type periodKey struct {
	pub    IssuerKey
	id     [32]byte
	server oprf.VerifiableServer
}

func newPeriodKey(t TokenType, period uint64, sk *oprf.PrivateKey) *periodKey {
	p, _ := t.params()
	server := oprf.NewVerifiableServer(p.suite, sk)
	pub, err := server.PublicKey().MarshalBinary()
	if err != nil || len(pub) != p.ne {
		panic("sealedsender: serializing an issuer public key failed")
	}
	k := &periodKey{pub: IssuerKey{TokenType: t, Period: period, PublicKey: pub}, server: server}
	k.id = k.pub.ID()
	return k
}

// PrivacyPassIssuer issues and redeems Privacy Pass tokens of one token
// type ([SchemePrivacyPass]). It issues them blindly: it sees only blinded
// elements at issuance and only finished tokens at redemption, and cannot
// link the two. The key of each period is derived from the master secret,
// so issuers sharing the secret agree without coordination; tokens made
// with the current or the previous period's key are accepted.
//
// A PrivacyPassIssuer is safe for concurrent use.
type PrivacyPassIssuer struct {
	tokenType TokenType
	params    *tokenParams
	cfg       IssuerConfig
	challenge TokenChallenge
	digest    [32]byte

	mu     sync.Mutex
	master []byte
	keys   map[uint64]*periodKey
}

// NewPrivacyPassIssuer returns an issuer of tokens of challenge.TokenType,
// all answering challenge, which clients get with the keys (the redemption
// context should be empty: a per-token context would let the issuer link).
// The master secret must be at least [MasterSecretSize] random bytes and
// must be kept secret; the issuer keeps a copy.
func NewPrivacyPassIssuer(master []byte, challenge *TokenChallenge, cfg *IssuerConfig) (*PrivacyPassIssuer, error) {
	if len(master) < MasterSecretSize {
		return nil, errors.New("sealedsender: master secret too short")
	}
	p, err := challenge.TokenType.params()
	if err != nil {
		return nil, err
	}
	digest, err := challenge.digest()
	if err != nil {
		return nil, err
	}
	return &PrivacyPassIssuer{
		tokenType: challenge.TokenType,
		params:    p,
		cfg:       cfg.withDefaults(),
		challenge: *challenge,
		digest:    digest,
		master:    append([]byte{}, master...),
		keys:      make(map[uint64]*periodKey),
	}, nil
}

// String returns a description of the issuer that leaves out its secrets.
func (i *PrivacyPassIssuer) String() string {
	return fmt.Sprintf("PrivacyPassIssuer(%v, %q, [redacted])", i.tokenType, i.challenge.IssuerName)
}

// Scheme returns [SchemePrivacyPass].
func (i *PrivacyPassIssuer) Scheme() Scheme { return SchemePrivacyPass }

// Challenge returns the challenge every token of this issuer answers.
func (i *PrivacyPassIssuer) Challenge() *TokenChallenge {
	c := i.challenge
	c.RedemptionContext = append([]byte{}, c.RedemptionContext...)
	return &c
}

// key returns the key of the given period, deriving it on first use. Keys
// of periods before the one before now are forgotten.
func (i *PrivacyPassIssuer) key(period, now uint64) (*periodKey, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if k, ok := i.keys[period]; ok {
		return k, nil
	}
	for p := range i.keys {
		if p+1 < now {
			delete(i.keys, p)
		}
	}
	// The per-period seed is HKDF-SHA256 of the master secret, bound to the
	// token type and period; DeriveKeyPair (RFC 9497, Section 3.2.1) turns
	// it into the key pair.
	info := make([]byte, 0, 64)
	info = append(info, "MicroChat sealedsender privacypass period key"...)
	info = binary.BigEndian.AppendUint16(info, uint16(i.tokenType))
	info = binary.BigEndian.AppendUint64(info, period)
	seed, err := hkdf.Key(sha256.New, i.master, nil, string(info), 32)
	if err != nil {
		return nil, err
	}
	sk, err := oprf.DeriveKey(i.params.suite, oprf.VerifiableMode, seed, info)
	clear(seed)
	if err != nil {
		return nil, err
	}
	k := newPeriodKey(i.tokenType, period, sk)
	i.keys[period] = k
	return k, nil
}

// Keys returns the directory of public keys to publish: the current
// period's key, which clients use for new requests, and the previous one,
// whose tokens are still accepted.
func (i *PrivacyPassIssuer) Keys() (*KeyDirectory, error) {
	now := i.cfg.period(i.cfg.Now())
	d := new(KeyDirectory)
	periods := []uint64{now}
	if now > 0 {
		periods = append(periods, now-1)
	}
	for _, p := range periods {
		k, err := i.key(p, now)
		if err != nil {
			return nil, err
		}
		d.Keys = append(d.Keys, k.pub)
	}
	return d, nil
}

// Issue implements [Issuer]. The request is a [BatchTokenRequest] made
// with the current period's key, and the response a [BatchTokenResponse].
// Only the current key issues, so that all clients of a period share one
// key.
func (i *PrivacyPassIssuer) Issue(account string, request []byte) ([]byte, error) {
	req, err := ParseBatchTokenRequest(request)
	if err != nil {
		return nil, err
	}
	if req.TokenType != i.tokenType {
		return nil, fmt.Errorf("sealedsender: request for %v from a %v issuer: %w", req.TokenType, i.tokenType, ErrUnsupportedTokenType)
	}
	n := len(req.BlindedMsgs)
	if n == 0 || n > i.cfg.MaxBatch {
		return nil, fmt.Errorf("sealedsender: %d tokens requested: %w", n, ErrBatchSize)
	}
	now := i.cfg.period(i.cfg.Now())
	k, err := i.key(now, now)
	if err != nil {
		return nil, err
	}
	if req.TruncatedTokenKeyID != k.id[31] {
		return nil, fmt.Errorf("sealedsender: request for key ID ..%02x: %w", req.TruncatedTokenKeyID, ErrUnknownKey)
	}
	evalReq := &oprf.EvaluationRequest{Elements: make([]oprf.Blinded, n)}
	for j, m := range req.BlindedMsgs {
		e, ok := i.params.parseElement(m)
		if !ok {
			return nil, malformed("blinded element", nil)
		}
		evalReq.Elements[j] = e
	}
	if err := i.cfg.Quotas.Reserve(account, now, n, i.cfg.Quota); err != nil {
		return nil, fmt.Errorf("sealedsender: issuing privacy pass tokens: %w", err)
	}
	resp, err := evaluate(k, evalReq)
	if err != nil {
		return nil, err
	}
	return resp.Bytes()
}

// evaluate computes BlindEvaluateBatch (draft-ietf-privacypass-batched-tokens,
// Section 5.2): every blinded element times the key, and one DLEQ proof.
func evaluate(k *periodKey, req *oprf.EvaluationRequest) (*BatchTokenResponse, error) {
	p, _ := k.pub.TokenType.params()
	ev, err := k.server.Evaluate(req)
	if err != nil {
		return nil, fmt.Errorf("sealedsender: evaluating token request: %w", err)
	}
	resp := &BatchTokenResponse{EvaluatedMsgs: make([][]byte, len(ev.Elements))}
	for j, e := range ev.Elements {
		resp.EvaluatedMsgs[j] = p.serializeElement(e)
	}
	proof, err := ev.Proof.MarshalBinary()
	if err != nil || len(proof) != 2*p.ns {
		panic("sealedsender: serializing a DLEQ proof failed")
	}
	resp.EvaluatedProof = proof
	return resp, nil
}

// Redeem implements [Redeemer]. The token must be an encoded [Token] of
// the issuer's token type that answers the issuer's challenge, made with
// the current or the previous period's key (else [ErrUnknownKey]), with a
// valid authenticator (else [ErrInvalidToken]), and not spent before (else
// [ErrDoubleSpend]). Only a valid token is recorded as spent.
func (i *PrivacyPassIssuer) Redeem(token []byte) error {
	t, err := ParseToken(token)
	if err != nil {
		return err
	}
	if t.TokenType != i.tokenType {
		return fmt.Errorf("sealedsender: %v token at a %v issuer: %w", t.TokenType, i.tokenType, ErrUnsupportedTokenType)
	}
	if t.ChallengeDigest != i.digest {
		return fmt.Errorf("sealedsender: token answers another challenge: %w", ErrInvalidToken)
	}
	now := i.cfg.period(i.cfg.Now())
	var key *periodKey
	for _, p := range []uint64{now, now - 1} {
		if p > now {
			break // no period before 0
		}
		k, err := i.key(p, now)
		if err != nil {
			return err
		}
		if k.id == t.TokenKeyID {
			key = k
			break
		}
	}
	if key == nil {
		return fmt.Errorf("sealedsender: redeeming token: %w", ErrUnknownKey)
	}
	if !key.server.VerifyFinalize(t.input(), t.Authenticator) {
		return fmt.Errorf("sealedsender: redeeming token: %w", ErrInvalidToken)
	}
	if err := i.cfg.Spent.MarkSpent(sha256.Sum256(token), key.pub.Period); err != nil {
		return fmt.Errorf("sealedsender: redeeming token: %w", err)
	}
	return nil
}

type dleqProof = dleq.Proof
