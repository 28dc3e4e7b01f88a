package sealedsender

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/zk/dleq"
)

// MasterSecretSize is the minimum size of a [PrivacyPassIssuer]'s master
// secret.
const MasterSecretSize = 32

// periodKey is the issuer's key pair for one period.
type periodKey struct {
	period uint64
	pub    IssuerKey
	id     [32]byte
	server oprf.VerifiableServer
}

func newPeriodKey(t TokenType, period uint64, notBefore int64, sk *oprf.PrivateKey) *periodKey {
	p, _ := t.params()
	server := oprf.NewVerifiableServer(p.suite, sk)
	pub, err := server.PublicKey().MarshalBinary()
	if err != nil || len(pub) != p.ne {
		panic("sealedsender: serializing an issuer public key failed")
	}
	k := &periodKey{period: period, pub: IssuerKey{TokenType: t, PublicKey: pub, NotBefore: notBefore}, server: server}
	k.id = k.pub.ID()
	return k
}

// PrivacyPassIssuer issues and redeems Privacy Pass tokens of one token
// type ([SchemePrivacyPass]) with the protocol of RFC 9578, Section 5:
// requests and responses are the TokenRequest and TokenResponse of one
// token, tokens are RFC 9577 Tokens, and keys are published in an RFC 9578
// issuer directory ([PrivacyPassIssuer.Keys]). A standard Privacy Pass
// client can use it unchanged. The amortized batches of
// draft-ietf-privacypass-batched-tokens are an option
// ([IssuerConfig.BatchedTokensDraft], [PrivacyPassIssuer.IssueBatch]).
//
// It issues blindly: it sees only blinded elements at issuance and only
// finished tokens at redemption, and cannot link the two. The key of each
// period is derived from the master secret, so issuers sharing the secret
// agree without coordination. Tokens are bound to a group
// ([TokenChallenge.ForGroup]); those of the previous, current and (within
// the clock skew) next period's key are accepted.
//
// A PrivacyPassIssuer is safe for concurrent use.
type PrivacyPassIssuer struct {
	tokenType TokenType
	params    *tokenParams
	cfg       IssuerConfig
	challenge TokenChallenge

	mu     sync.Mutex
	master []byte
	keys   map[uint64]*periodKey
}

// NewPrivacyPassIssuer returns an issuer of tokens of challenge.TokenType
// whose base challenge (what clients get, to bind to a group with
// [TokenChallenge.ForGroup]) is challenge; its redemption context must be
// empty. The master secret must be at least [MasterSecretSize] random
// bytes and must be kept secret; the issuer keeps a copy. cfg.Spent and
// cfg.Quotas are required (else [ErrNoStore]).
func NewPrivacyPassIssuer(master []byte, challenge *TokenChallenge, cfg *IssuerConfig) (*PrivacyPassIssuer, error) {
	if len(master) < MasterSecretSize {
		return nil, errors.New("sealedsender: master secret too short")
	}
	p, err := challenge.TokenType.params()
	if err != nil {
		return nil, err
	}
	if len(challenge.RedemptionContext) != 0 {
		return nil, errors.New("sealedsender: the base challenge must have an empty redemption context")
	}
	if _, err := challenge.digest(); err != nil {
		return nil, err
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &PrivacyPassIssuer{
		tokenType: challenge.TokenType,
		params:    p,
		cfg:       c,
		challenge: *challenge,
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

// Challenge returns the base challenge: the one of [NewPrivacyPassIssuer],
// with an empty redemption context.
func (i *PrivacyPassIssuer) Challenge() *TokenChallenge {
	c := i.challenge
	c.RedemptionContext = nil
	return &c
}

// key returns the key of the given period, deriving it on first use. Keys
// of periods no longer accepted are forgotten.
func (i *PrivacyPassIssuer) key(period uint64, oldest uint64) (*periodKey, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if k, ok := i.keys[period]; ok {
		return k, nil
	}
	for p := range i.keys {
		if p < oldest {
			delete(i.keys, p)
		}
	}
	// The per-period seed is HKDF-SHA256 of the master secret, bound to the
	// token type, the period and a counter; DeriveKeyPair (RFC 9497,
	// Section 3.2.1) turns it into the key pair. The counter makes the
	// truncated key ID (the last byte of token_key_id) equal to the period
	// modulo 4, so that any four consecutive periods have distinct
	// truncated key IDs, as RFC 9578, Section 5.5 asks (about 4 tries).
	for ctr := uint16(0); ; ctr++ {
		info := make([]byte, 0, 64)
		info = append(info, "MicroChat sealedsender privacypass period key"...)
		info = binary.BigEndian.AppendUint16(info, uint16(i.tokenType))
		info = binary.BigEndian.AppendUint64(info, period)
		info = binary.BigEndian.AppendUint16(info, ctr)
		seed, err := hkdf.Key(sha256.New, i.master, nil, string(info), 32)
		if err != nil {
			return nil, err
		}
		sk, err := oprf.DeriveKey(i.params.suite, oprf.VerifiableMode, seed, info)
		clear(seed)
		if err != nil {
			return nil, err
		}
		k := newPeriodKey(i.tokenType, period, i.cfg.periodStart(period), sk)
		if k.id[31]%4 == byte(period%4) {
			i.keys[period] = k
			return k, nil
		}
	}
}

// window returns the periods whose keys are in use at now: issuing from
// the period at now minus the skew to the one at now plus the skew, and
// redeeming from the period before that to the same end.
func (i *PrivacyPassIssuer) window(now time.Time) (redeemFrom, issueFrom, to uint64) {
	issueFrom = i.cfg.period(now.Add(-i.cfg.ClockSkew))
	to = i.cfg.period(now.Add(i.cfg.ClockSkew))
	redeemFrom = issueFrom
	if redeemFrom > 0 {
		redeemFrom--
	}
	return redeemFrom, issueFrom, to
}

// Keys returns the issuer directory to publish (RFC 9578, Section 4): the
// next, the current and the previous period's keys, in that order, each
// with the start of its period as not-before. A standard client uses the
// first key whose not-before has passed, the current one; the next one is
// listed ahead of time so that clocks a little ahead find it; the previous
// one still verifies tokens.
func (i *PrivacyPassIssuer) Keys() (*KeyDirectory, error) {
	now := i.cfg.Now()
	cur := i.cfg.period(now)
	redeemFrom, _, _ := i.window(now)
	d := &KeyDirectory{IssuerRequestURI: i.cfg.IssuerRequestURI}
	periods := []uint64{cur + 1, cur}
	if cur > 0 {
		periods = append(periods, cur-1)
	}
	for _, p := range periods {
		k, err := i.key(p, redeemFrom)
		if err != nil {
			return nil, err
		}
		d.Keys = append(d.Keys, k.pub)
	}
	return d, nil
}

// issuingKey returns the key a request's truncated key ID names, among the
// keys that issue at now.
func (i *PrivacyPassIssuer) issuingKey(truncated uint8) (*periodKey, uint64, error) {
	now := i.cfg.Now()
	redeemFrom, from, to := i.window(now)
	for p := from; p <= to; p++ {
		k, err := i.key(p, redeemFrom)
		if err != nil {
			return nil, 0, err
		}
		if k.id[31] == truncated {
			return k, i.cfg.period(now), nil
		}
	}
	return nil, 0, fmt.Errorf("sealedsender: request for key ID ..%02x: %w", truncated, ErrUnknownKey)
}

// Issue implements [Issuer] with the protocol of RFC 9578, Section 5.2: the
// request is one TokenRequest (application/private-token-request) and the
// response one TokenResponse (application/private-token-response). The
// size, token type and truncated key ID are checked before anything is
// parsed, and the element is deserialized before the quota is charged; a
// refused request charges nothing. The key must be the current period's,
// or the next or previous one's within the clock skew.
func (i *PrivacyPassIssuer) Issue(account string, request []byte) ([]byte, error) {
	if len(request) != i.params.requestSize() {
		return nil, malformed("token request", fmt.Errorf("%d bytes", len(request)))
	}
	if t := TokenType(binary.BigEndian.Uint16(request)); t != i.tokenType {
		return nil, fmt.Errorf("sealedsender: request for %v from a %v issuer: %w", t, i.tokenType, ErrUnsupportedTokenType)
	}
	k, period, err := i.issuingKey(request[2])
	if err != nil {
		return nil, err
	}
	e, ok := i.params.parseElement(request[3:])
	if !ok {
		return nil, malformed("blinded element", nil)
	}
	if err := i.cfg.Quotas.Reserve(account, period, 1, i.cfg.Quota); err != nil {
		return nil, fmt.Errorf("sealedsender: issuing privacy pass token: %w", err)
	}
	resp, err := evaluate(k, &oprf.EvaluationRequest{Elements: []oprf.Blinded{e}})
	if err != nil {
		return nil, err
	}
	single := TokenResponse{EvaluateMsg: resp.EvaluatedMsgs[0], EvaluateProof: resp.EvaluatedProof}
	return single.Bytes(), nil
}

// IssueBatch answers an amortized batch request of
// draft-ietf-privacypass-batched-tokens (a [BatchTokenRequest]) with a
// [BatchTokenResponse]: one evaluation per blinded element and one DLEQ
// proof for all. It fails with [ErrUnsupportedProtocol] unless
// [IssuerConfig.BatchedTokensDraft] is set. A request longer than
// [IssuerConfig.MaxBatch] tokens can be is refused with [ErrBatchSize]
// before it is parsed.
func (i *PrivacyPassIssuer) IssueBatch(account string, request []byte) ([]byte, error) {
	if !i.cfg.BatchedTokensDraft {
		return nil, fmt.Errorf("sealedsender: batched-tokens draft request: %w", ErrUnsupportedProtocol)
	}
	if len(request) > i.params.maxBatchRequestSize(i.cfg.MaxBatch) {
		return nil, fmt.Errorf("sealedsender: batch request of %d bytes: %w", len(request), ErrBatchSize)
	}
	if len(request) < 3 {
		return nil, malformed("batch token request", nil)
	}
	if t := TokenType(binary.BigEndian.Uint16(request)); t != i.tokenType {
		return nil, fmt.Errorf("sealedsender: request for %v from a %v issuer: %w", t, i.tokenType, ErrUnsupportedTokenType)
	}
	k, period, err := i.issuingKey(request[2])
	if err != nil {
		return nil, err
	}
	req, err := ParseBatchTokenRequest(request)
	if err != nil {
		return nil, err
	}
	n := len(req.BlindedMsgs)
	if n == 0 || n > i.cfg.MaxBatch {
		return nil, fmt.Errorf("sealedsender: %d tokens requested: %w", n, ErrBatchSize)
	}
	evalReq := &oprf.EvaluationRequest{Elements: make([]oprf.Blinded, n)}
	for j, m := range req.BlindedMsgs {
		e, ok := i.params.parseElement(m)
		if !ok {
			return nil, malformed("blinded element", nil)
		}
		evalReq.Elements[j] = e
	}
	if err := i.cfg.Quotas.Reserve(account, period, n, i.cfg.Quota); err != nil {
		return nil, fmt.Errorf("sealedsender: issuing privacy pass tokens: %w", err)
	}
	resp, err := evaluate(k, evalReq)
	if err != nil {
		return nil, err
	}
	return resp.Bytes()
}

// evaluate computes BlindEvaluate (RFC 9497, Section 3.3.2), batched as
// BlindEvaluateBatch of draft-ietf-privacypass-batched-tokens: every
// blinded element times the key, and one DLEQ proof.
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

// Redeem implements [Redeemer]: it redeems a token for an envelope to the
// group groupID, which must answer the issuer's base challenge bound to
// that group ([TokenChallenge.ForGroup]).
func (i *PrivacyPassIssuer) Redeem(token, groupID []byte) error {
	return i.redeem(token, i.challenge.ForGroup(groupID), groupID)
}

// RedeemChallenge redeems a token that answers challenge, which the
// caller (the origin) issued, for example in a WWW-Authenticate header
// (RFC 9577, Section 2.1). Most users won't need it: [Server.Accept] binds
// tokens to groups with [PrivacyPassIssuer.Redeem].
func (i *PrivacyPassIssuer) RedeemChallenge(token []byte, challenge *TokenChallenge) error {
	return i.redeem(token, challenge, nil)
}

// redeem checks, cheapest first: the size, the token type, the challenge
// digest, the key ID (one of the keys in use), then the rate-limit hook,
// and only then the authenticator (a VOPRF evaluation, RFC 9578, Section
// 5.4). Only a valid token is recorded as spent.
func (i *PrivacyPassIssuer) redeem(token []byte, challenge *TokenChallenge, groupID []byte) error {
	if len(token) != i.params.tokenSize() {
		return malformed("token", fmt.Errorf("%d bytes", len(token)))
	}
	if t := TokenType(binary.BigEndian.Uint16(token)); t != i.tokenType {
		return fmt.Errorf("sealedsender: %v token at a %v issuer: %w", t, i.tokenType, ErrUnsupportedTokenType)
	}
	if challenge.TokenType != i.tokenType {
		return fmt.Errorf("sealedsender: %v challenge at a %v issuer: %w", challenge.TokenType, i.tokenType, ErrUnsupportedTokenType)
	}
	digest, err := challenge.digest()
	if err != nil {
		return err
	}
	if [32]byte(token[34:66]) != digest {
		return fmt.Errorf("sealedsender: token answers another challenge (or group): %w", ErrInvalidToken)
	}
	id := [32]byte(token[66:98])
	redeemFrom, _, to := i.window(i.cfg.Now())
	var key *periodKey
	for p := redeemFrom; p <= to; p++ {
		k, err := i.key(p, redeemFrom)
		if err != nil {
			return err
		}
		if k.id == id {
			key = k
			break
		}
	}
	if key == nil {
		return fmt.Errorf("sealedsender: redeeming token: %w", ErrUnknownKey)
	}
	if i.cfg.BeforeVerify != nil {
		if err := i.cfg.BeforeVerify(groupID); err != nil {
			return fmt.Errorf("sealedsender: redeeming token: %w (%w)", ErrRateLimited, err)
		}
	}
	if !key.server.VerifyFinalize(token[:98], token[98:]) {
		return fmt.Errorf("sealedsender: redeeming token: %w", ErrInvalidToken)
	}
	if err := i.cfg.Spent.MarkSpent(sha256.Sum256(token), key.period); err != nil {
		return fmt.Errorf("sealedsender: redeeming token: %w", err)
	}
	return nil
}

type dleqProof = dleq.Proof
