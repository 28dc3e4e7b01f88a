package sealedsender

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/oprf"
	"github.com/microchat/e2ee/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// TokenType is a Privacy Pass token type (RFC 9577, Section 6.2).
type TokenType uint16

// The supported Privacy Pass token types.
const (
	// TokenTypeVOPRFP384 is token type 0x0001, VOPRF(P-384, SHA-384), as
	// specified in RFC 9578, Section 5.
	TokenTypeVOPRFP384 TokenType = 0x0001
	// TokenTypeVOPRFRistretto255 is token type 0x0005, VOPRF(ristretto255,
	// SHA-512), as specified in draft-ietf-privacypass-batched-tokens. It is
	// several times faster than P-384.
	TokenTypeVOPRFRistretto255 TokenType = 0x0005
)

// String returns the token type's registered name.
func (t TokenType) String() string {
	switch t {
	case TokenTypeVOPRFP384:
		return "VOPRF(P-384, SHA-384)"
	case TokenTypeVOPRFRistretto255:
		return "VOPRF(ristretto255, SHA-512)"
	default:
		return fmt.Sprintf("TokenType(0x%04x)", uint16(t))
	}
}

// tokenParams holds the sizes of RFC 9497, Section 4 for a token type: Ne
// (a serialized element), Ns (a serialized scalar) and Nh (the hash output,
// which is the authenticator size Nk of RFC 9578).
type tokenParams struct {
	suite      oprf.Suite
	ne, ns, nh int
}

var (
	paramsP384    = &tokenParams{oprf.SuiteP384, 49, 48, 48}
	paramsRist255 = &tokenParams{oprf.SuiteRistretto255, 32, 32, 64}
)

// tokenSize is the size of a Token of these parameters (RFC 9577, Section
// 2.2.1, with Nid = 32).
func (p *tokenParams) tokenSize() int { return 2 + 32 + 32 + 32 + p.nh }

// requestSize is the size of an RFC 9578 TokenRequest.
func (p *tokenParams) requestSize() int { return 2 + 1 + p.ne }

// responseSize is the size of an RFC 9578 TokenResponse.
func (p *tokenParams) responseSize() int { return p.ne + 2*p.ns }

// maxBatchRequestSize is the size of a batched-tokens draft request for n
// tokens with the longest (4-byte) length prefix.
func (p *tokenParams) maxBatchRequestSize(n int) int { return 2 + 1 + 4 + n*p.ne }

func (t TokenType) params() (*tokenParams, error) {
	switch t {
	case TokenTypeVOPRFP384:
		return paramsP384, nil
	case TokenTypeVOPRFRistretto255:
		return paramsRist255, nil
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedTokenType, t)
	}
}

// parseElement deserializes a group element (RFC 9497, Section 2.1): it must
// be exactly Ne bytes, in canonical compressed form, and not the identity.
func (p *tokenParams) parseElement(b []byte) (group.Element, bool) {
	if len(b) != p.ne {
		return nil, false
	}
	e := p.suite.Group().NewElement()
	if e.UnmarshalBinary(b) != nil || e.IsIdentity() {
		return nil, false
	}
	if enc, err := e.MarshalBinaryCompress(); err != nil || string(enc) != string(b) {
		return nil, false
	}
	return e, true
}

func (p *tokenParams) serializeElement(e group.Element) []byte {
	enc, err := e.MarshalBinaryCompress()
	if err != nil || len(enc) != p.ne {
		panic("sealedsender: serializing a group element failed")
	}
	return enc
}

// TokenChallenge is the challenge of RFC 9577, Section 2.1, that a token
// answers. Its SHA-256 digest is part of every token.
//
//	struct {
//	    uint16_t token_type;
//	    opaque issuer_name<1..2^16-1>;
//	    opaque redemption_context<0..32>;
//	    opaque origin_info<0..2^16-1>;
//	} TokenChallenge;
type TokenChallenge struct {
	TokenType TokenType
	// IssuerName names the issuer; it must not be empty.
	IssuerName string
	// RedemptionContext is empty or 32 bytes.
	RedemptionContext []byte
	// OriginInfo lists the origins the token is valid for, separated by
	// commas; it may be empty.
	OriginInfo string
}

func (c *TokenChallenge) marshal(b *cryptobyte.Builder) {
	if len(c.IssuerName) == 0 || len(c.IssuerName) > 0xffff || len(c.OriginInfo) > 0xffff ||
		(len(c.RedemptionContext) != 0 && len(c.RedemptionContext) != 32) {
		b.SetError(fmt.Errorf("sealedsender: invalid token challenge field size: %w", ErrMalformed))
		return
	}
	b.AddUint16(uint16(c.TokenType))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.IssuerName)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.RedemptionContext) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.OriginInfo)) })
}

func (c *TokenChallenge) unmarshal(s *cryptobyte.String) bool {
	var issuer, ctx, origin cryptobyte.String
	if !s.ReadUint16((*uint16)(&c.TokenType)) ||
		!s.ReadUint16LengthPrefixed(&issuer) || len(issuer) == 0 ||
		!s.ReadUint8LengthPrefixed(&ctx) || (len(ctx) != 0 && len(ctx) != 32) ||
		!s.ReadUint16LengthPrefixed(&origin) {
		return false
	}
	c.IssuerName = string(issuer)
	c.RedemptionContext = append([]byte{}, ctx...)
	c.OriginInfo = string(origin)
	return true
}

// Bytes returns the encoding of c, or an error if a field has a size the
// encoding does not allow.
func (c *TokenChallenge) Bytes() ([]byte, error) { return wire.Marshal(c.marshal) }

// ParseTokenChallenge decodes a TokenChallenge.
func ParseTokenChallenge(b []byte) (*TokenChallenge, error) {
	c := new(TokenChallenge)
	if err := wire.Parse(b, c.unmarshal); err != nil {
		return nil, malformed("token challenge", err)
	}
	return c, nil
}

// groupContextLabel starts the input of [GroupRedemptionContext].
const groupContextLabel = "MicroChat sealedsender group binding v1\x00"

// GroupRedemptionContext returns the 32-byte redemption_context that binds
// a token to the MLS group groupID: SHA-256 of a fixed label, the group
// ID's length as a big-endian uint32, and the group ID.
func GroupRedemptionContext(groupID []byte) []byte {
	h := sha256.New()
	h.Write([]byte(groupContextLabel))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(groupID)))
	h.Write(n[:])
	h.Write(groupID)
	return h.Sum(nil)
}

// ForGroup returns a copy of c whose redemption_context is
// [GroupRedemptionContext] of groupID (RFC 9577, Section 2.1.1.2, a
// context bound to a property of the request: its destination).
//
// It is how a token is bound to one group without the issuer learning the
// group. The client puts SHA-256 of this challenge into the token input,
// which it blinds before the issuer sees it (RFC 9578, Section 5.1), so
// issuance reveals nothing about the group. At redemption the server
// recomputes the challenge from the group ID of the envelope's
// PrivateMessage and refuses a token whose challenge_digest differs, before
// spending it: a token lifted onto an envelope for another group is
// refused, and the genuine envelope still goes through.
func (c *TokenChallenge) ForGroup(groupID []byte) *TokenChallenge {
	out := *c
	out.RedemptionContext = GroupRedemptionContext(groupID)
	return &out
}

// digest returns SHA-256 of the encoded challenge, its challenge_digest.
func (c *TokenChallenge) digest() ([32]byte, error) {
	b, err := c.Bytes()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// TokenRequest is a request for one token (RFC 9578, Section 5.1).
//
//	struct {
//	    uint16_t token_type;
//	    uint8_t truncated_token_key_id;
//	    uint8_t blinded_msg[Ne];
//	} TokenRequest;
type TokenRequest struct {
	TokenType           TokenType
	TruncatedTokenKeyID uint8
	BlindedMsg          []byte
}

// Bytes returns the encoding of r.
func (r *TokenRequest) Bytes() []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(r.TokenType))
		b.AddUint8(r.TruncatedTokenKeyID)
		b.AddBytes(r.BlindedMsg)
	})
}

// ParseTokenRequest decodes a TokenRequest of a supported token type.
func ParseTokenRequest(b []byte) (*TokenRequest, error) {
	r := new(TokenRequest)
	s := cryptobyte.String(b)
	if !s.ReadUint16((*uint16)(&r.TokenType)) {
		return nil, malformed("token request", nil)
	}
	p, err := r.TokenType.params()
	if err != nil {
		return nil, fmt.Errorf("sealedsender: parsing token request: %w", err)
	}
	if !s.ReadUint8(&r.TruncatedTokenKeyID) || !s.CopyBytes(alloc(&r.BlindedMsg, p.ne)) || !s.Empty() {
		return nil, malformed("token request", nil)
	}
	return r, nil
}

// TokenResponse is the issuer's answer to a [TokenRequest] (RFC 9578,
// Section 5.2).
//
//	struct {
//	    uint8_t evaluate_msg[Ne];
//	    uint8_t evaluate_proof[Ns+Ns];
//	} TokenResponse;
type TokenResponse struct {
	EvaluateMsg   []byte
	EvaluateProof []byte
}

// Bytes returns the encoding of r.
func (r *TokenResponse) Bytes() []byte {
	return append(append([]byte{}, r.EvaluateMsg...), r.EvaluateProof...)
}

// ParseTokenResponse decodes a TokenResponse of token type t.
func ParseTokenResponse(t TokenType, b []byte) (*TokenResponse, error) {
	p, err := t.params()
	if err != nil {
		return nil, fmt.Errorf("sealedsender: parsing token response: %w", err)
	}
	r := new(TokenResponse)
	s := cryptobyte.String(b)
	if !s.CopyBytes(alloc(&r.EvaluateMsg, p.ne)) || !s.CopyBytes(alloc(&r.EvaluateProof, 2*p.ns)) || !s.Empty() {
		return nil, malformed("token response", nil)
	}
	return r, nil
}

// BatchTokenRequest is a request for a batch of tokens under one key, the
// AmortizedBatchTokenRequest of draft-ietf-privacypass-batched-tokens,
// Section 5.1 (called BatchTokenRequest in its earlier revisions).
//
//	struct {
//	    uint16_t token_type;
//	    uint8_t truncated_token_key_id;
//	    BlindedMessage blinded_msgs<V>;   /* uint8 blinded_msg[Ne] each */
//	} BatchTokenRequest;
//
// Vector lengths use the variable-length integers of RFC 9000, Section 16,
// of which this package accepts only the minimal 1-, 2- and 4-byte forms.
type BatchTokenRequest struct {
	TokenType           TokenType
	TruncatedTokenKeyID uint8
	BlindedMsgs         [][]byte
}

// Bytes returns the encoding of r, or an error if it is too large.
func (r *BatchTokenRequest) Bytes() ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(r.TokenType))
		b.AddUint8(r.TruncatedTokenKeyID)
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, m := range r.BlindedMsgs {
				b.AddBytes(m)
			}
		})
	})
}

// ParseBatchTokenRequest decodes a BatchTokenRequest of a supported token
// type.
func ParseBatchTokenRequest(b []byte) (*BatchTokenRequest, error) {
	r := new(BatchTokenRequest)
	s := cryptobyte.String(b)
	if !s.ReadUint16((*uint16)(&r.TokenType)) {
		return nil, malformed("batch token request", nil)
	}
	p, err := r.TokenType.params()
	if err != nil {
		return nil, fmt.Errorf("sealedsender: parsing batch token request: %w", err)
	}
	var msgs cryptobyte.String
	if !s.ReadUint8(&r.TruncatedTokenKeyID) || !wire.ReadVarintPrefixed(&s, &msgs) || !s.Empty() ||
		len(msgs)%p.ne != 0 {
		return nil, malformed("batch token request", nil)
	}
	r.BlindedMsgs = splitCopy(msgs, p.ne)
	return r, nil
}

// BatchTokenResponse is the issuer's answer to a [BatchTokenRequest]: one
// evaluated element per blinded element, and one DLEQ proof for all of
// them. It is the AmortizedBatchTokenResponse of
// draft-ietf-privacypass-batched-tokens, Section 5.2.
//
//	struct {
//	    EvaluatedMessage evaluated_msgs<V>;   /* uint8 evaluated_msg[Ne] each */
//	    uint8_t evaluated_proof[Ns + Ns];
//	} BatchTokenResponse;
type BatchTokenResponse struct {
	EvaluatedMsgs  [][]byte
	EvaluatedProof []byte
}

// Bytes returns the encoding of r, or an error if it is too large.
func (r *BatchTokenResponse) Bytes() ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, m := range r.EvaluatedMsgs {
				b.AddBytes(m)
			}
		})
		b.AddBytes(r.EvaluatedProof)
	})
}

// ParseBatchTokenResponse decodes a BatchTokenResponse of token type t.
func ParseBatchTokenResponse(t TokenType, b []byte) (*BatchTokenResponse, error) {
	p, err := t.params()
	if err != nil {
		return nil, fmt.Errorf("sealedsender: parsing batch token response: %w", err)
	}
	r := new(BatchTokenResponse)
	s := cryptobyte.String(b)
	var msgs cryptobyte.String
	if !wire.ReadVarintPrefixed(&s, &msgs) || len(msgs)%p.ne != 0 ||
		!s.CopyBytes(alloc(&r.EvaluatedProof, 2*p.ns)) || !s.Empty() {
		return nil, malformed("batch token response", nil)
	}
	r.EvaluatedMsgs = splitCopy(msgs, p.ne)
	return r, nil
}

// Token is a Privacy Pass token (RFC 9577, Section 2.2; RFC 9578, Section
// 5.3), what a client presents to spend it.
//
//	struct {
//	    uint16_t token_type;
//	    uint8_t nonce[32];
//	    uint8_t challenge_digest[32];
//	    uint8_t token_key_id[32];
//	    uint8_t authenticator[Nk];
//	} Token;
type Token struct {
	TokenType       TokenType
	Nonce           [32]byte
	ChallengeDigest [32]byte
	TokenKeyID      [32]byte
	Authenticator   []byte
}

// Bytes returns the encoding of t.
func (t *Token) Bytes() []byte {
	return append(t.input(), t.Authenticator...)
}

// input returns the token's first four fields, the token_input that the
// authenticator is the PRF output of (RFC 9578, Section 5.1).
func (t *Token) input() []byte {
	out := make([]byte, 0, 2+3*32+64)
	out = append(out, byte(t.TokenType>>8), byte(t.TokenType))
	out = append(out, t.Nonce[:]...)
	out = append(out, t.ChallengeDigest[:]...)
	return append(out, t.TokenKeyID[:]...)
}

// ParseToken decodes a Token of a supported token type.
func ParseToken(b []byte) (*Token, error) {
	t := new(Token)
	s := cryptobyte.String(b)
	if !s.ReadUint16((*uint16)(&t.TokenType)) {
		return nil, malformed("token", nil)
	}
	p, err := t.TokenType.params()
	if err != nil {
		return nil, fmt.Errorf("sealedsender: parsing token: %w", err)
	}
	if !s.CopyBytes(t.Nonce[:]) || !s.CopyBytes(t.ChallengeDigest[:]) || !s.CopyBytes(t.TokenKeyID[:]) ||
		!s.CopyBytes(alloc(&t.Authenticator, p.nh)) || !s.Empty() {
		return nil, malformed("token", nil)
	}
	return t, nil
}

// alloc sets *dst to a new slice of n bytes and returns it.
func alloc(dst *[]byte, n int) []byte {
	*dst = make([]byte, n)
	return *dst
}

// splitCopy copies b, whose length is a multiple of n, into n-byte slices.
func splitCopy(b []byte, n int) [][]byte {
	all := append([]byte{}, b...)
	out := make([][]byte, len(all)/n)
	for i := range out {
		out[i] = all[i*n : (i+1)*n : (i+1)*n]
	}
	return out
}
