package sealedsender

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/oprf"
)

// PrivacyPassClient requests Privacy Pass tokens from an issuer under one
// published key. It is safe for concurrent use.
type PrivacyPassClient struct {
	params    *tokenParams
	key       IssuerKey
	keyID     [32]byte
	digest    [32]byte
	challenge TokenChallenge
	client    oprf.VerifiableClient
}

// NewPrivacyPassClient returns a client that requests tokens answering
// challenge under key. The caller should first check key against other
// clients' views with [KeyDirectory.Check] or by comparing [IssuerKey.ID].
func NewPrivacyPassClient(key *IssuerKey, challenge *TokenChallenge) (*PrivacyPassClient, error) {
	p, err := key.TokenType.params()
	if err != nil {
		return nil, err
	}
	if challenge.TokenType != key.TokenType {
		return nil, fmt.Errorf("sealedsender: %v challenge for a %v key: %w", challenge.TokenType, key.TokenType, ErrUnsupportedTokenType)
	}
	if _, ok := p.parseElement(key.PublicKey); !ok {
		return nil, malformed("issuer public key", nil)
	}
	pub := new(oprf.PublicKey)
	if err := pub.UnmarshalBinary(p.suite, key.PublicKey); err != nil {
		return nil, malformed("issuer public key", err)
	}
	digest, err := challenge.digest()
	if err != nil {
		return nil, err
	}
	c := &PrivacyPassClient{
		params:    p,
		key:       IssuerKey{TokenType: key.TokenType, Period: key.Period, PublicKey: append([]byte{}, key.PublicKey...)},
		digest:    digest,
		challenge: *challenge,
		client:    oprf.NewVerifiableClient(p.suite, pub),
	}
	c.keyID = c.key.ID()
	return c, nil
}

// PendingTokens is a client's state between sending a [BatchTokenRequest]
// and receiving the response. It holds the blinds, which must be kept
// secret, and can be finalized once. It is not safe for concurrent use.
type PendingTokens struct {
	c      *PrivacyPassClient
	fin    *oprf.FinalizeData
	nonces [][32]byte
}

// String returns a description that leaves out the blinds.
func (p *PendingTokens) String() string {
	return fmt.Sprintf("PendingTokens(%d, [redacted])", len(p.nonces))
}

// Request starts a request for n tokens (RFC 9578, Section 5.1, batched as
// in draft-ietf-privacypass-batched-tokens, Section 5.1). It returns the
// encoded [BatchTokenRequest] to send to the issuer and the state to
// finalize its response with.
func (c *PrivacyPassClient) Request(n int) (*PendingTokens, []byte, error) {
	if n <= 0 {
		return nil, nil, ErrBatchSize
	}
	nonces := make([][32]byte, n)
	for i := range nonces {
		rand.Read(nonces[i][:])
	}
	return c.request(nonces, nil)
}

// request is Request with chosen nonces and, if blinds is not nil, chosen
// blinds (for the test vectors).
func (c *PrivacyPassClient) request(nonces [][32]byte, blinds []oprf.Blind) (*PendingTokens, []byte, error) {
	inputs := make([][]byte, len(nonces))
	for i := range nonces {
		t := Token{TokenType: c.key.TokenType, Nonce: nonces[i], ChallengeDigest: c.digest, TokenKeyID: c.keyID}
		inputs[i] = t.input()
	}
	var (
		fin     *oprf.FinalizeData
		evalReq *oprf.EvaluationRequest
		err     error
	)
	if blinds == nil {
		fin, evalReq, err = c.client.Blind(inputs)
	} else {
		fin, evalReq, err = c.client.DeterministicBlind(inputs, blinds)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sealedsender: blinding token inputs: %w", err)
	}
	req := &BatchTokenRequest{TokenType: c.key.TokenType, TruncatedTokenKeyID: c.keyID[31]}
	for _, e := range evalReq.Elements {
		req.BlindedMsgs = append(req.BlindedMsgs, c.params.serializeElement(e))
	}
	b, err := req.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return &PendingTokens{c: c, fin: fin, nonces: nonces}, b, nil
}

// Finalize verifies the issuer's [BatchTokenResponse] and returns the
// encoded tokens. It fails with [ErrInvalidProof] if the proof does not
// show that every evaluation used the published key, and with
// [ErrBatchSize] if the response does not hold one evaluation per token
// requested. The tokens must be kept secret until they are spent.
func (p *PendingTokens) Finalize(response []byte) ([][]byte, error) {
	if p.fin == nil {
		return nil, errors.New("sealedsender: pending tokens already finalized")
	}
	resp, err := ParseBatchTokenResponse(p.c.key.TokenType, response)
	if err != nil {
		return nil, err
	}
	auths, err := p.finalize(resp.EvaluatedMsgs, resp.EvaluatedProof)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(auths))
	for i := range auths {
		t := Token{
			TokenType:       p.c.key.TokenType,
			Nonce:           p.nonces[i],
			ChallengeDigest: p.c.digest,
			TokenKeyID:      p.c.keyID,
			Authenticator:   auths[i],
		}
		out[i] = t.Bytes()
	}
	p.fin, p.nonces = nil, nil
	return out, nil
}

// finalize checks the proof and unblinds the evaluated elements, returning
// the authenticators (FinalizeBatch of
// draft-ietf-privacypass-batched-tokens, Section 5.3).
func (p *PendingTokens) finalize(evaluated [][]byte, proof []byte) ([][]byte, error) {
	if len(evaluated) != len(p.nonces) {
		return nil, fmt.Errorf("sealedsender: %d evaluations for %d tokens: %w", len(evaluated), len(p.nonces), ErrBatchSize)
	}
	ev := &oprf.Evaluation{Elements: make([]oprf.Evaluated, len(evaluated))}
	for i, m := range evaluated {
		e, ok := p.c.params.parseElement(m)
		if !ok {
			return nil, malformed("evaluated element", nil)
		}
		ev.Elements[i] = e
	}
	ev.Proof = new(dleqProof)
	if err := ev.Proof.UnmarshalBinary(p.c.params.suite.Group(), proof); err != nil {
		return nil, malformed("proof", err)
	}
	auths, err := p.c.client.Finalize(p.fin, ev)
	if errors.Is(err, oprf.ErrInvalidProof) {
		return nil, fmt.Errorf("sealedsender: finalizing tokens: %w", ErrInvalidProof)
	}
	if err != nil {
		return nil, fmt.Errorf("sealedsender: finalizing tokens: %w", err)
	}
	return auths, nil
}
