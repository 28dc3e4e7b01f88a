package sealedsender

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cloudflare/circl/oprf"
	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/stretchr/testify/require"
)

// privacyPassVector is one case of RFC 9578, Appendix A.1 (token type
// 0x0001).
type privacyPassVector struct {
	SkS            vectortest.HexBytes `json:"skS"`
	PkS            vectortest.HexBytes `json:"pkS"`
	TokenChallenge vectortest.HexBytes `json:"token_challenge"`
	Nonce          vectortest.HexBytes `json:"nonce"`
	Blind          vectortest.HexBytes `json:"blind"`
	TokenRequest   vectortest.HexBytes `json:"token_request"`
	TokenResponse  vectortest.HexBytes `json:"token_response"`
	Token          vectortest.HexBytes `json:"token"`
}

// loadPrivacyPassVectors reads the RFC 9578 Appendix A.1 vectors from
// $PRIVACYPASS_TEST_VECTORS, else ../shared/privacypass-vectors.
func loadPrivacyPassVectors(t testing.TB) []privacyPassVector {
	t.Helper()
	p := vectortest.SharedPath(t, "PRIVACYPASS_TEST_VECTORS", "privacypass-vectors", "priv_verif_rfc9578.go.json")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	var vs []privacyPassVector
	require.NoError(t, json.Unmarshal(data, &vs))
	if len(vs) == 0 {
		t.Fatal("no privacy pass vectors")
	}
	return vs
}

func TestPrivacyPassVectors(t *testing.T) {
	t.Run("voprf", func(t *testing.T) {
		for i, v := range loadPrivacyPassVectors(t) {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				testPrivacyPassVector(t, &v)
			})
		}
	})
}

// testPrivacyPassVector checks both directions of interoperability with
// RFC 9578 token type 0x0001, byte for byte:
//
//   - this package's client against a standard issuer: with the vector's
//     key, challenge, nonce and blind, [PrivacyPassClient.Request] writes
//     the vector's TokenRequest, and finalizing the vector's TokenResponse
//     (whose proof it verifies) yields the vector's Token;
//   - a standard client against this package's issuer: given the vector's
//     TokenRequest, [PrivacyPassIssuer.Issue] answers with the vector's
//     evaluated element and a proof the vector's client accepts, which
//     finalizes to the vector's Token; the issuer then redeems that Token
//     once. (The vectors leave out the DLEQ proof's randomness, so only
//     the evaluated element of a fresh TokenResponse can match.)
func testPrivacyPassVector(t *testing.T, v *privacyPassVector) {
	sk := new(oprf.PrivateKey)
	require.NoError(t, sk.UnmarshalBinary(oprf.SuiteP384, v.SkS))
	key := newPeriodKey(TokenTypeVOPRFP384, 0, 0, sk)
	require.Equal(t, []byte(v.PkS), key.pub.PublicKey)
	challenge, err := ParseTokenChallenge(v.TokenChallenge)
	require.NoError(t, err)
	enc, err := challenge.Bytes()
	require.NoError(t, err)
	require.Equal(t, []byte(v.TokenChallenge), enc)

	// The issuer directory carries the key: encode and parse it.
	dir := &KeyDirectory{IssuerRequestURI: "https://issuer.example/request", Keys: []IssuerKey{{TokenType: TokenTypeVOPRFP384, PublicKey: v.PkS}}}
	dirJSON, err := dir.Bytes()
	require.NoError(t, err)
	dir, err = ParseKeyDirectory(dirJSON)
	require.NoError(t, err)
	client, err := NewPrivacyPassClientForKey(&dir.Keys[0], challenge)
	require.NoError(t, err)
	blind := oprf.SuiteP384.Group().NewScalar()
	require.NoError(t, blind.UnmarshalBinary(v.Blind))
	require.Len(t, []byte(v.Nonce), 32)
	nonce := [32]byte(v.Nonce)
	newPending := func() (*PendingToken, []byte) {
		p, blinded, err := client.request([]*TokenChallenge{challenge}, [][32]byte{nonce}, []oprf.Blind{blind})
		require.NoError(t, err)
		req := &TokenRequest{TokenType: TokenTypeVOPRFP384, TruncatedTokenKeyID: client.keyID[31], BlindedMsg: blinded[0]}
		return &PendingToken{*p}, req.Bytes()
	}

	t.Run("wire", func(t *testing.T) {
		for name, c := range map[string]struct {
			b     []byte
			parse func([]byte) ([]byte, error)
		}{
			"token_request": {v.TokenRequest, func(b []byte) ([]byte, error) {
				r, err := ParseTokenRequest(b)
				if err != nil {
					return nil, err
				}
				return r.Bytes(), nil
			}},
			"token_response": {v.TokenResponse, func(b []byte) ([]byte, error) {
				r, err := ParseTokenResponse(TokenTypeVOPRFP384, b)
				if err != nil {
					return nil, err
				}
				return r.Bytes(), nil
			}},
			"token": {v.Token, func(b []byte) ([]byte, error) {
				r, err := ParseToken(b)
				if err != nil {
					return nil, err
				}
				return r.Bytes(), nil
			}},
		} {
			got, err := c.parse(c.b)
			require.NoError(t, err, name)
			require.Equal(t, c.b, got, name)
		}
		tok, _ := ParseToken(v.Token)
		require.Equal(t, sha256.Sum256(v.TokenChallenge), tok.ChallengeDigest)
		require.Equal(t, sha256.Sum256(v.PkS), tok.TokenKeyID, "token_key_id = SHA-256(SerializeElement(pkI))")
		require.Equal(t, tok.TokenKeyID[31], v.TokenRequest[2], "truncated_token_key_id = last byte")
	})
	t.Run("client-to-standard-issuer", func(t *testing.T) {
		pending, req := newPending()
		require.Equal(t, []byte(v.TokenRequest), req)
		tok, err := pending.Finalize(v.TokenResponse) // checks the vector's proof
		require.NoError(t, err)
		require.Equal(t, []byte(v.Token), tok)
	})
	t.Run("standard-client-to-issuer", func(t *testing.T) {
		iss, err := NewPrivacyPassIssuer(make([]byte, 32), testChallenge(TokenTypeVOPRFP384),
			withMemory(&IssuerConfig{Now: func() time.Time { return time.Unix(0, 0) }}))
		require.NoError(t, err)
		iss.keys[0] = key // the vector's key as period 0's key
		resp, err := iss.Issue("standard-client", v.TokenRequest)
		require.NoError(t, err)
		require.Len(t, resp, len(v.TokenResponse))
		require.Equal(t, []byte(v.TokenResponse[:49]), resp[:49], "evaluate_msg")
		pending, _ := newPending()
		tok, err := pending.Finalize(resp)
		require.NoError(t, err)
		require.Equal(t, []byte(v.Token), tok)

		bad := bytes.Clone(v.Token)
		bad[len(bad)-1] ^= 1
		require.ErrorIs(t, iss.RedeemChallenge(bad, challenge), ErrInvalidToken)
		require.NoError(t, iss.RedeemChallenge(v.Token, challenge))
		require.ErrorIs(t, iss.RedeemChallenge(v.Token, challenge), ErrDoubleSpend)
		// Through the HTTP authentication scheme of RFC 9577.
		h := AuthorizationHeader(v.Token)
		got, err := ParseAuthorization(h)
		require.NoError(t, err)
		require.Equal(t, []byte(v.Token), got)
	})
}
