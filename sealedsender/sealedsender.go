package sealedsender

import (
	"errors"
	"fmt"
	"time"
)

// Scheme identifies a token scheme in an [Envelope].
type Scheme uint16

// The token schemes.
const (
	// SchemeSimple is the scheme of random tokens the issuer can link. See
	// [NewSimpleIssuer].
	SchemeSimple Scheme = 0x0001
	// SchemePrivacyPass is the scheme of blindly issued Privacy Pass tokens
	// (RFC 9578). See [NewPrivacyPassIssuer].
	SchemePrivacyPass Scheme = 0x0002
)

// String returns the scheme's name.
func (s Scheme) String() string {
	switch s {
	case SchemeSimple:
		return "simple"
	case SchemePrivacyPass:
		return "privacypass"
	default:
		return fmt.Sprintf("Scheme(0x%04x)", uint16(s))
	}
}

// Errors returned by this package. Match them with [errors.Is].
var (
	// ErrMalformed means an encoding could not be parsed, or had trailing
	// bytes or fields of the wrong size.
	ErrMalformed = errors.New("sealedsender: malformed encoding")
	// ErrUnsupportedScheme means an envelope named a scheme the server has no
	// redeemer for.
	ErrUnsupportedScheme = errors.New("sealedsender: unsupported token scheme")
	// ErrUnsupportedTokenType means a Privacy Pass structure named a token
	// type other than the one expected.
	ErrUnsupportedTokenType = errors.New("sealedsender: unsupported token type")
	// ErrInvalidToken means a token failed verification: an unknown simple
	// token, a wrong challenge digest, or a wrong authenticator.
	ErrInvalidToken = errors.New("sealedsender: invalid token")
	// ErrDoubleSpend means a valid token was already spent.
	ErrDoubleSpend = errors.New("sealedsender: token already spent")
	// ErrUnknownKey means a Privacy Pass token or request named an issuer
	// key that is not in use: unknown, or retired after its period and the
	// next one.
	ErrUnknownKey = errors.New("sealedsender: unknown or retired issuer key")
	// ErrExpired means a simple token was issued before the previous period.
	ErrExpired = errors.New("sealedsender: token expired")
	// ErrInvalidProof means an issuer's response failed verification on the
	// client: the DLEQ proof did not verify, so the issuer did not use the
	// published key for every token of the batch.
	ErrInvalidProof = errors.New("sealedsender: invalid issuance proof")
	// ErrQuotaExceeded means an account asked for more tokens than its quota
	// for the period allows. Nothing was issued.
	ErrQuotaExceeded = errors.New("sealedsender: issuance quota exceeded")
	// ErrBatchSize means a request asked for zero tokens or more than the
	// issuer's batch limit, or a response did not match the request's size.
	ErrBatchSize = errors.New("sealedsender: bad batch size")
	// ErrKeyMismatch means two views of the issuer's keys disagree.
	ErrKeyMismatch = errors.New("sealedsender: issuer key mismatch")
	// ErrNotPrivateMessage means an envelope's message is not an MLS message
	// of wire format mls_private_message.
	ErrNotPrivateMessage = errors.New("sealedsender: message is not an MLS PrivateMessage")
	// ErrUnsupportedVersion means an envelope's version is not
	// [EnvelopeVersion].
	ErrUnsupportedVersion = errors.New("sealedsender: unsupported envelope version")
)

// Issuer issues batches of tokens to authenticated accounts. Both
// [*SimpleIssuer] and [*PrivacyPassIssuer] implement it. Implementations are
// safe for concurrent use.
type Issuer interface {
	// Scheme returns the scheme of the tokens issued.
	Scheme() Scheme
	// Issue answers a request for a batch of tokens from account, which the
	// caller has authenticated. It charges the batch to the account's quota
	// for the current period and fails with [ErrQuotaExceeded], issuing
	// nothing, when the quota would be exceeded.
	Issue(account string, request []byte) (response []byte, err error)
}

// Redeemer verifies tokens presented in envelopes and marks them spent.
// Both [*SimpleIssuer] and [*PrivacyPassIssuer] implement it.
// Implementations are safe for concurrent use.
type Redeemer interface {
	// Scheme returns the scheme of the tokens redeemed.
	Scheme() Scheme
	// Redeem verifies token and marks it spent. It fails with
	// [ErrDoubleSpend] if the token was already spent, also when the same
	// token is redeemed concurrently: exactly one of the calls succeeds.
	Redeem(token []byte) error
}

// IssuerConfig holds the settings shared by both issuers. The zero value
// of every field selects its default.
type IssuerConfig struct {
	// Now returns the current time. The default is [time.Now].
	Now func() time.Time
	// Period is the length of a key period and of a quota period. The
	// default is 24 hours. Tokens are accepted during the period in which
	// they were issued and the next one.
	Period time.Duration
	// Quota is the number of tokens an account may receive per period. The
	// default is 1,000.
	Quota int
	// MaxBatch is the largest number of tokens in one request. The default
	// is 100.
	MaxBatch int
	// Spent records spent tokens. The default is a new [MemoryStore].
	Spent SpentStore
	// Quotas counts the tokens issued to each account. The default is a new
	// [MemoryStore].
	Quotas QuotaStore
}

const (
	defaultPeriod   = 24 * time.Hour
	defaultQuota    = 1000
	defaultMaxBatch = 100
)

// withDefaults returns a copy of c with every zero field set to its
// default. Stores default to one shared MemoryStore.
func (c *IssuerConfig) withDefaults() IssuerConfig {
	var out IssuerConfig
	if c != nil {
		out = *c
	}
	if out.Now == nil {
		out.Now = time.Now
	}
	if out.Period <= 0 {
		out.Period = defaultPeriod
	}
	if out.Period < time.Second {
		out.Period = time.Second
	}
	if out.Quota <= 0 {
		out.Quota = defaultQuota
	}
	if out.MaxBatch <= 0 {
		out.MaxBatch = defaultMaxBatch
	}
	var mem *MemoryStore
	if out.Spent == nil || out.Quotas == nil {
		mem = NewMemoryStore()
	}
	if out.Spent == nil {
		out.Spent = mem
	}
	if out.Quotas == nil {
		out.Quotas = mem
	}
	return out
}

// period returns the number of the period holding t: whole periods since
// the Unix epoch (0 before it).
func (c *IssuerConfig) period(t time.Time) uint64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint64(s) / uint64(c.Period/time.Second)
}

// malformed wraps err (which may be nil) so that it matches [ErrMalformed].
func malformed(what string, err error) error {
	if err == nil {
		return fmt.Errorf("sealedsender: parsing %s: %w", what, ErrMalformed)
	}
	return fmt.Errorf("sealedsender: parsing %s: %w (%w)", what, ErrMalformed, err)
}
