package sealedsender

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"github.com/microchat/e2ee/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// SimpleTokenSize is the size of a simple token.
const SimpleTokenSize = 32

// SimpleIssuer issues and redeems tokens of [SchemeSimple]: 32-byte random
// values, of which the issuer keeps only the SHA-256 digest.
//
// The issuer sees every token it issues, together with the account that
// asked for it, so it can link each redeemed token to that account: this
// scheme hides the sender only from parties that do not see the issuer's
// records. Use [PrivacyPassIssuer] to hide it from the issuer as well.
//
// A SimpleIssuer is safe for concurrent use.
type SimpleIssuer struct {
	cfg    IssuerConfig
	issued IssuedStore
}

// NewSimpleIssuer returns an issuer of simple tokens that records issued
// tokens in issued. A token is accepted during the period it was issued in
// and the next one. Every store (issued, cfg.Spent, cfg.Quotas) is
// required, else it fails with [ErrNoStore].
func NewSimpleIssuer(issued IssuedStore, cfg *IssuerConfig) (*SimpleIssuer, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if issued == nil {
		return nil, ErrNoStore
	}
	return &SimpleIssuer{cfg: c, issued: issued}, nil
}

// Scheme returns [SchemeSimple].
func (s *SimpleIssuer) Scheme() Scheme { return SchemeSimple }

// NewSimpleRequest returns a request for n simple tokens, to send to the
// issuer. Its encoding is
//
//	struct { uint16 count; } SimpleTokenRequest;
func NewSimpleRequest(n int) ([]byte, error) {
	if n <= 0 || n > 0xffff {
		return nil, ErrBatchSize
	}
	return []byte{byte(n >> 8), byte(n)}, nil
}

// Issue implements [Issuer]. The response is
//
//	struct { opaque tokens<V>; } SimpleTokenResponse;
//
// where tokens is the concatenation of the requested number of 32-byte
// tokens. The caller must send it to the client confidentially.
func (s *SimpleIssuer) Issue(account string, request []byte) ([]byte, error) {
	var n uint16
	if err := wire.Parse(request, func(str *cryptobyte.String) bool {
		return str.ReadUint16(&n)
	}); err != nil {
		return nil, malformed("simple token request", err)
	}
	if n == 0 || int(n) > s.cfg.MaxBatch {
		return nil, fmt.Errorf("sealedsender: %d tokens requested: %w", n, ErrBatchSize)
	}
	period := s.cfg.period(s.cfg.Now())
	if err := s.cfg.Quotas.Reserve(account, period, int(n), s.cfg.Quota); err != nil {
		return nil, fmt.Errorf("sealedsender: issuing simple tokens: %w", err)
	}
	tokens := make([]byte, int(n)*SimpleTokenSize)
	rand.Read(tokens)
	digests := make([][32]byte, n)
	for i := range digests {
		digests[i] = sha256.Sum256(tokens[i*SimpleTokenSize : (i+1)*SimpleTokenSize])
	}
	if err := s.issued.AddIssued(digests, period); err != nil {
		return nil, fmt.Errorf("sealedsender: recording issued tokens: %w", err)
	}
	return wire.Marshal(func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, tokens) })
}

// ParseSimpleResponse returns the tokens of an issuer's response to a
// request for n tokens made with [NewSimpleRequest]. The tokens must be
// kept secret until they are spent.
func ParseSimpleResponse(response []byte, n int) ([][]byte, error) {
	var body []byte
	if err := wire.Parse(response, func(s *cryptobyte.String) bool {
		return wire.ReadVarintBytes(s, &body)
	}); err != nil {
		return nil, malformed("simple token response", err)
	}
	if len(body) != n*SimpleTokenSize {
		return nil, fmt.Errorf("sealedsender: simple token response holds %d bytes for %d tokens: %w",
			len(body), n, ErrBatchSize)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = body[i*SimpleTokenSize : (i+1)*SimpleTokenSize : (i+1)*SimpleTokenSize]
	}
	return out, nil
}

// Redeem implements [Redeemer]. The token must have been issued by this
// issuer (its digest is in the issued store) during the current or the
// previous period, and not spent before.
//
// A simple token is not bound to a group: groupID is ignored, so whoever
// sees an envelope before the server does (a relay) could move its token
// to another envelope. Privacy Pass tokens are bound.
func (s *SimpleIssuer) Redeem(token, groupID []byte) error {
	if len(token) != SimpleTokenSize {
		return malformed("simple token", nil)
	}
	d := sha256.Sum256(token)
	issued, err := s.issued.IssuedPeriod(d)
	if err != nil {
		return fmt.Errorf("sealedsender: redeeming simple token: %w", err)
	}
	if now := s.cfg.period(s.cfg.Now()); issued+1 < now {
		return fmt.Errorf("sealedsender: simple token of period %d redeemed in period %d: %w",
			issued, now, ErrExpired)
	}
	if err := s.cfg.Spent.MarkSpent(d, issued); err != nil {
		return fmt.Errorf("sealedsender: redeeming simple token: %w", err)
	}
	return nil
}
