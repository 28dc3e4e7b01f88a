package sealedsender

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cloudflare/circl/oprf"
	"github.com/microchat/e2ee/internal/vectortest"
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
	if err != nil {
		t.Fatal(err)
	}
	var vs []privacyPassVector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
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

func testPrivacyPassVector(t *testing.T, v *privacyPassVector) {
	sk := new(oprf.PrivateKey)
	if err := sk.UnmarshalBinary(oprf.SuiteP384, v.SkS); err != nil {
		t.Fatal(err)
	}
	key := newPeriodKey(TokenTypeVOPRFP384, 0, sk)
	if !bytes.Equal(key.pub.PublicKey, v.PkS) {
		t.Fatalf("public key = %x, want %x", key.pub.PublicKey, v.PkS)
	}
	challenge, err := ParseTokenChallenge(v.TokenChallenge)
	if err != nil {
		t.Fatal(err)
	}
	if enc, _ := challenge.Bytes(); !bytes.Equal(enc, v.TokenChallenge) {
		t.Fatalf("challenge re-encodes as %x", enc)
	}
	client, err := NewPrivacyPassClient(&key.pub, challenge)
	if err != nil {
		t.Fatal(err)
	}
	blind := oprf.SuiteP384.Group().NewScalar()
	if err := blind.UnmarshalBinary(v.Blind); err != nil {
		t.Fatal(err)
	}
	var nonce [32]byte
	if copy(nonce[:], v.Nonce) != 32 || len(v.Nonce) != 32 {
		t.Fatal("nonce is not 32 bytes")
	}
	pending, batchReq, err := client.request([][32]byte{nonce}, []oprf.Blind{blind})
	if err != nil {
		t.Fatal(err)
	}
	breq, err := ParseBatchTokenRequest(batchReq)
	if err != nil {
		t.Fatal(err)
	}
	req := &TokenRequest{breq.TokenType, breq.TruncatedTokenKeyID, breq.BlindedMsgs[0]}

	t.Run("token_request", func(t *testing.T) {
		if got := req.Bytes(); !bytes.Equal(got, v.TokenRequest) {
			t.Errorf("token_request = %x, want %x", got, v.TokenRequest)
		}
		parsed, err := ParseTokenRequest(v.TokenRequest)
		if err != nil || !bytes.Equal(parsed.Bytes(), v.TokenRequest) {
			t.Errorf("ParseTokenRequest: %v", err)
		}
	})
	t.Run("token_response", func(t *testing.T) {
		// The DLEQ proof randomness is not in the vectors, so only the
		// evaluated element can match.
		resp, err := evaluate(key, &oprf.EvaluationRequest{Elements: []oprf.Blinded{mustElement(t, paramsP384, req.BlindedMsg)}})
		if err != nil {
			t.Fatal(err)
		}
		single := &TokenResponse{resp.EvaluatedMsgs[0], resp.EvaluatedProof}
		got := single.Bytes()
		if len(got) != len(v.TokenResponse) || !bytes.Equal(got[:49], v.TokenResponse[:49]) {
			t.Errorf("token_response = %x, want %x...", got, v.TokenResponse[:49])
		}
		parsed, err := ParseTokenResponse(TokenTypeVOPRFP384, v.TokenResponse)
		if err != nil || !bytes.Equal(parsed.Bytes(), v.TokenResponse) {
			t.Errorf("ParseTokenResponse: %v", err)
		}
	})
	t.Run("token", func(t *testing.T) {
		// Finalizing with the vector's response checks its proof too.
		resp, err := ParseTokenResponse(TokenTypeVOPRFP384, v.TokenResponse)
		if err != nil {
			t.Fatal(err)
		}
		auths, err := pending.finalize([][]byte{resp.EvaluateMsg}, resp.EvaluateProof)
		if err != nil {
			t.Fatal(err)
		}
		tok := Token{TokenTypeVOPRFP384, nonce, client.digest, client.keyID, auths[0]}
		if got := tok.Bytes(); !bytes.Equal(got, v.Token) {
			t.Errorf("token = %x, want %x", got, v.Token)
		}
		parsed, err := ParseToken(v.Token)
		if err != nil || !bytes.Equal(parsed.Bytes(), v.Token) {
			t.Errorf("ParseToken: %v", err)
		}
	})
	t.Run("verification", func(t *testing.T) {
		iss, err := NewPrivacyPassIssuer(make([]byte, 32), challenge, &IssuerConfig{Now: func() time.Time { return time.Unix(0, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		iss.keys[0] = key // the vector's key as period 0's key
		bad := bytes.Clone(v.Token)
		bad[len(bad)-1] ^= 1
		if err := iss.Redeem(bad); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("tampered token: %v, want ErrInvalidToken", err)
		}
		if err := iss.Redeem(v.Token); err != nil {
			t.Errorf("Redeem: %v", err)
		}
		if err := iss.Redeem(v.Token); !errors.Is(err, ErrDoubleSpend) {
			t.Errorf("second Redeem: %v, want ErrDoubleSpend", err)
		}
	})
}

func mustElement(t testing.TB, p *tokenParams, b []byte) oprf.Blinded {
	t.Helper()
	e, ok := p.parseElement(b)
	if !ok {
		t.Fatalf("bad element %x", b)
	}
	return e
}
