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
	challenge TokenChallenge
	view      *KeyView
	client    oprf.VerifiableClient
}

// NewPrivacyPassClient returns a client that requests tokens with the
// current period's key of dir, after checking dir and the base challenge
// as [NewKeyView] does (keys for unexpected periods fail with
// [ErrUnexpectedKey]). Compare [PrivacyPassClient.View] with the other
// members of each group to detect a key or challenge given to this client
// alone. A client is for one period: fetch the directory again and make a
// new client when the period changes.
func NewPrivacyPassClient(dir *KeyDirectory, challenge *TokenChallenge, cfg *ClientConfig) (*PrivacyPassClient, error) {
	v, err := NewKeyView(dir, challenge, cfg)
	if err != nil {
		return nil, err
	}
	c, err := NewPrivacyPassClientForKey(&v.current, challenge)
	if err != nil {
		return nil, err
	}
	c.view = v
	return c, nil
}

// NewPrivacyPassClientForKey returns a client that requests tokens under
// key, with no check of its period and no [KeyView]: for an issuer that
// does not rotate keys by period, such as a standard issuer whose
// directory has no not-before times. Most users won't need it; the caller
// must check by other means that every client is given the same key.
func NewPrivacyPassClientForKey(key *IssuerKey, challenge *TokenChallenge) (*PrivacyPassClient, error) {
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
	if _, err := challenge.digest(); err != nil {
		return nil, err
	}
	c := &PrivacyPassClient{
		params:    p,
		key:       IssuerKey{TokenType: key.TokenType, NotBefore: key.NotBefore, PublicKey: append([]byte{}, key.PublicKey...)},
		challenge: *challenge,
		client:    oprf.NewVerifiableClient(p.suite, pub),
	}
	c.challenge.RedemptionContext = append([]byte{}, challenge.RedemptionContext...)
	c.keyID = c.key.ID()
	return c, nil
}

// View returns the client's checked view of the issuer, or nil for a
// client made with [NewPrivacyPassClientForKey].
func (c *PrivacyPassClient) View() *KeyView { return c.view }

// Key returns the key the client requests tokens under.
func (c *PrivacyPassClient) Key() *IssuerKey {
	k := c.key
	k.PublicKey = append([]byte{}, k.PublicKey...)
	return &k
}

// Challenge returns the client's base challenge. Bind a token to a group
// with Challenge().ForGroup(groupID).
func (c *PrivacyPassClient) Challenge() *TokenChallenge {
	ch := c.challenge
	ch.RedemptionContext = append([]byte{}, ch.RedemptionContext...)
	return &ch
}

// pending holds what finalizing needs: the blinds (secret) and the token
// inputs.
type pending struct {
	c      *PrivacyPassClient
	fin    *oprf.FinalizeData
	inputs []Token // without authenticators
}

// PendingToken is a client's state between sending a TokenRequest and
// receiving the response. It holds the blind, which must be kept secret,
// and can be finalized once. It is not safe for concurrent use.
type PendingToken struct{ p pending }

// PendingTokens is a client's state between sending a batched-tokens
// draft request and receiving the response. It holds the blinds, which
// must be kept secret, and can be finalized once. It is not safe for
// concurrent use.
type PendingTokens struct{ p pending }

// String returns a description that leaves out the blind.
func (p *PendingToken) String() string { return "PendingToken([redacted])" }

// String returns a description that leaves out the blinds.
func (p *PendingTokens) String() string {
	return fmt.Sprintf("PendingTokens(%d, [redacted])", len(p.p.inputs))
}

// Request starts the request for one token answering challenge, as
// specified in RFC 9578, Section 5.1: a random nonce, the token input,
// blinded. It returns the TokenRequest to send to the issuer (as
// application/private-token-request) and the state to finalize its
// response with. To bind the token to a group, pass
// c.Challenge().ForGroup(groupID); the issuer never sees the challenge.
func (c *PrivacyPassClient) Request(challenge *TokenChallenge) (*PendingToken, []byte, error) {
	p, blinded, err := c.request([]*TokenChallenge{challenge}, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	req := &TokenRequest{TokenType: c.key.TokenType, TruncatedTokenKeyID: c.keyID[31], BlindedMsg: blinded[0]}
	return &PendingToken{*p}, req.Bytes(), nil
}

// RequestBatch starts an amortized batch request of
// draft-ietf-privacypass-batched-tokens, Section 5.1, for one token per
// challenge (the challenges may differ: each is blinded into its own
// token input). It returns the encoded [BatchTokenRequest] for
// [PrivacyPassIssuer.IssueBatch] and the state to finalize its response
// with. Standard issuers do not accept it; use [PrivacyPassClient.Request].
func (c *PrivacyPassClient) RequestBatch(challenges []*TokenChallenge) (*PendingTokens, []byte, error) {
	if len(challenges) == 0 {
		return nil, nil, ErrBatchSize
	}
	p, blinded, err := c.request(challenges, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	req := &BatchTokenRequest{TokenType: c.key.TokenType, TruncatedTokenKeyID: c.keyID[31], BlindedMsgs: blinded}
	b, err := req.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return &PendingTokens{*p}, b, nil
}

// request blinds one token input per challenge, with chosen nonces and
// blinds if not nil (for the test vectors), else random ones.
func (c *PrivacyPassClient) request(challenges []*TokenChallenge, nonces [][32]byte, blinds []oprf.Blind) (*pending, [][]byte, error) {
	inputs := make([]Token, len(challenges))
	enc := make([][]byte, len(challenges))
	for i, ch := range challenges {
		if ch.TokenType != c.key.TokenType {
			return nil, nil, fmt.Errorf("sealedsender: %v challenge for a %v key: %w", ch.TokenType, c.key.TokenType, ErrUnsupportedTokenType)
		}
		d, err := ch.digest()
		if err != nil {
			return nil, nil, err
		}
		t := Token{TokenType: c.key.TokenType, ChallengeDigest: d, TokenKeyID: c.keyID}
		if nonces != nil {
			t.Nonce = nonces[i]
		} else {
			rand.Read(t.Nonce[:])
		}
		inputs[i], enc[i] = t, t.input()
	}
	var (
		fin     *oprf.FinalizeData
		evalReq *oprf.EvaluationRequest
		err     error
	)
	if blinds == nil {
		fin, evalReq, err = c.client.Blind(enc)
	} else {
		fin, evalReq, err = c.client.DeterministicBlind(enc, blinds)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sealedsender: blinding token inputs: %w", err)
	}
	blinded := make([][]byte, len(evalReq.Elements))
	for i, e := range evalReq.Elements {
		blinded[i] = c.params.serializeElement(e)
	}
	return &pending{c: c, fin: fin, inputs: inputs}, blinded, nil
}

// Finalize verifies the issuer's TokenResponse (RFC 9578, Section 5.3) and
// returns the encoded Token. It fails with [ErrInvalidProof] if the proof
// does not show that the evaluation used the published key. The token must
// be kept secret until it is spent.
func (p *PendingToken) Finalize(response []byte) ([]byte, error) {
	if len(response) != p.p.c.params.responseSize() {
		return nil, malformed("token response", fmt.Errorf("%d bytes", len(response)))
	}
	resp, err := ParseTokenResponse(p.p.c.key.TokenType, response)
	if err != nil {
		return nil, err
	}
	toks, err := p.p.finalize([][]byte{resp.EvaluateMsg}, resp.EvaluateProof)
	if err != nil {
		return nil, err
	}
	return toks[0], nil
}

// Finalize verifies the issuer's [BatchTokenResponse] and returns the
// encoded tokens, in the order of the challenges. It fails with
// [ErrInvalidProof] if the proof does not show that every evaluation used
// the published key, and with [ErrBatchSize] if the response does not hold
// one evaluation per token requested. The tokens must be kept secret until
// they are spent.
func (p *PendingTokens) Finalize(response []byte) ([][]byte, error) {
	resp, err := ParseBatchTokenResponse(p.p.c.key.TokenType, response)
	if err != nil {
		return nil, err
	}
	return p.p.finalize(resp.EvaluatedMsgs, resp.EvaluatedProof)
}

// finalize checks the proof and unblinds the evaluated elements (Finalize
// of RFC 9497, Section 3.3.2, or FinalizeBatch of
// draft-ietf-privacypass-batched-tokens, Section 5.3), and returns the
// tokens.
func (p *pending) finalize(evaluated [][]byte, proof []byte) ([][]byte, error) {
	if p.fin == nil {
		return nil, errors.New("sealedsender: pending tokens already finalized")
	}
	if len(evaluated) != len(p.inputs) {
		return nil, fmt.Errorf("sealedsender: %d evaluations for %d tokens: %w", len(evaluated), len(p.inputs), ErrBatchSize)
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
	out := make([][]byte, len(auths))
	for i := range auths {
		t := p.inputs[i]
		t.Authenticator = auths[i]
		out[i] = t.Bytes()
	}
	p.fin, p.inputs = nil, nil
	return out, nil
}
