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
	// ErrUnexpectedKey means a key directory listed a key the client does
	// not expect: for a period other than the previous, current or next
	// one, without a not-before time on a period boundary, or a second key
	// for the same period. A server that hands one client a key of its own
	// would recognize that client's tokens, so the client refuses it.
	ErrUnexpectedKey = errors.New("sealedsender: unexpected issuer key")
	// ErrRateLimited means the [IssuerConfig.BeforeVerify] hook refused to
	// spend work on verifying a token.
	ErrRateLimited = errors.New("sealedsender: rate limited")
	// ErrNoStore means an issuer was constructed without a spent-token or
	// quota store. Pass a durable store (or, in tests, an explicit
	// [NewMemoryStore]).
	ErrNoStore = errors.New("sealedsender: no spent-token or quota store configured")
	// ErrUnsupportedProtocol means a request used an issuance protocol the
	// issuer does not accept (the batched-tokens draft is off by default).
	ErrUnsupportedProtocol = errors.New("sealedsender: unsupported issuance protocol")
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
	// Redeem verifies token for an envelope addressed to the MLS group
	// groupID and marks it spent. A Privacy Pass token is bound to one
	// group (see [TokenChallenge.ForGroup]) and is refused, and left
	// unspent, for any other. It fails with [ErrDoubleSpend] if the token
	// was already spent, also when the same token is redeemed
	// concurrently: exactly one of the calls succeeds.
	Redeem(token, groupID []byte) error
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
	// MaxBatch is the largest number of tokens in one batched request
	// (the simple scheme, and the batched-tokens draft). The default is
	// 100. A request longer than any request for MaxBatch tokens is
	// refused before it is parsed.
	MaxBatch int
	// ClockSkew is how far the server's clock may be behind or ahead of
	// its clients' and its other replicas'. A Privacy Pass issuer accepts
	// requests and tokens under the key of the period that starts within
	// ClockSkew of now, and issues under the previous period's key within
	// ClockSkew after the change. The default is 5 minutes; it is capped
	// at Period.
	ClockSkew time.Duration
	// Spent records spent tokens. It is required: a store that forgets
	// (a restart, a second replica with its own memory) accepts a spent
	// token again. Use a database shared by all replicas; tests may pass
	// [NewMemoryStore] explicitly.
	Spent SpentStore
	// Quotas counts the tokens issued to each account. It is required, for
	// the same reason as Spent.
	Quotas QuotaStore
	// BeforeVerify, if not nil, is called for each Privacy Pass token that
	// passed every cheap check (size, type, challenge, key ID) and is
	// about to cost a VOPRF evaluation (about half a millisecond on P-384).
	// Return an error to refuse it unverified and unspent: Redeem then
	// fails with an error matching [ErrRateLimited] and the hook's error.
	// Redemption is anonymous, so the hook can only count per group (the
	// argument; nil for [PrivacyPassIssuer.RedeemChallenge]) or globally;
	// limit per connection before calling [Server.Accept]. Most users won't
	// need it.
	BeforeVerify func(groupID []byte) error
	// BatchedTokensDraft makes a [PrivacyPassIssuer] accept, besides the
	// RFC 9578 TokenRequest, the amortized batch requests of
	// draft-ietf-privacypass-batched-tokens with [PrivacyPassIssuer.IssueBatch].
	// Off by default: standard clients do not speak it.
	BatchedTokensDraft bool
	// IssuerRequestURI is the issuer-request-uri of the directory a
	// [PrivacyPassIssuer] publishes (RFC 9578, Section 4). The default is
	// "/token-request", relative to the directory.
	IssuerRequestURI string
}

const (
	defaultPeriod    = 24 * time.Hour
	defaultQuota     = 1000
	defaultMaxBatch  = 100
	defaultClockSkew = 5 * time.Minute
)

// withDefaults returns a copy of c with every zero field set to its
// default, or [ErrNoStore] if a store is missing.
func (c *IssuerConfig) withDefaults() (IssuerConfig, error) {
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
	if out.ClockSkew <= 0 {
		out.ClockSkew = defaultClockSkew
	}
	if out.ClockSkew > out.Period {
		out.ClockSkew = out.Period
	}
	if out.IssuerRequestURI == "" {
		out.IssuerRequestURI = "/token-request"
	}
	if out.Spent == nil || out.Quotas == nil {
		return out, ErrNoStore
	}
	return out, nil
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

// periodStart returns the first second of period p.
func (c *IssuerConfig) periodStart(p uint64) int64 {
	return int64(p * uint64(c.Period/time.Second))
}

// malformed wraps err (which may be nil) so that it matches [ErrMalformed].
func malformed(what string, err error) error {
	if err == nil {
		return fmt.Errorf("sealedsender: parsing %s: %w", what, ErrMalformed)
	}
	return fmt.Errorf("sealedsender: parsing %s: %w (%w)", what, ErrMalformed, err)
}
