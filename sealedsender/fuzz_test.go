package sealedsender

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzParse checks the four properties every parser must have: no panic,
// a nil value on error, an error from the known set, and a byte-identical
// re-encoding of whatever parses.
func fuzzParse[T any](t *testing.T, data []byte, parse func([]byte) (*T, error), encode func(*T) ([]byte, error)) {
	v, err := parse(data)
	if err != nil {
		if v != nil {
			t.Fatalf("non-nil value with error %v", err)
		}
		if !isKnown(err) {
			t.Fatalf("unknown error %v", err)
		}
		return
	}
	enc, err := encode(v)
	require.NoError(t, err, "re-encoding")
	require.Equal(t, data, enc, "re-encoding differs")
}

// addVectorSeeds adds fields of the RFC 9578 vectors, when present, as
// seeds. It never skips or fails: the committed seeds are enough.
func addVectorSeeds(f *testing.F, field func(*privacyPassVector) []byte) {
	dir := os.Getenv("PRIVACYPASS_TEST_VECTORS")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "privacypass-vectors")
	}
	if _, err := os.Stat(filepath.Join(dir, "priv_verif_rfc9578.go.json")); err != nil {
		return
	}
	for _, v := range loadPrivacyPassVectors(f) {
		f.Add(field(&v))
	}
}

func respType(data []byte) (TokenType, []byte) {
	if len(data) == 0 {
		return TokenTypeVOPRFP384, data
	}
	if data[0]&1 == 0 {
		return TokenTypeVOPRFP384, data[1:]
	}
	return TokenTypeVOPRFRistretto255, data[1:]
}

func FuzzParseEnvelope(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParse(t, data, ParseEnvelope, (*Envelope).Bytes)
	})
}

func FuzzParseToken(f *testing.F) {
	addVectorSeeds(f, func(v *privacyPassVector) []byte { return v.Token })
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParse(t, data, ParseToken, func(v *Token) ([]byte, error) { return v.Bytes(), nil })
	})
}

func FuzzParseTokenChallenge(f *testing.F) {
	addVectorSeeds(f, func(v *privacyPassVector) []byte { return v.TokenChallenge })
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParse(t, data, ParseTokenChallenge, (*TokenChallenge).Bytes)
	})
}

func FuzzParseTokenRequest(f *testing.F) {
	addVectorSeeds(f, func(v *privacyPassVector) []byte { return v.TokenRequest })
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParse(t, data, ParseTokenRequest, func(v *TokenRequest) ([]byte, error) { return v.Bytes(), nil })
	})
}

func FuzzParseTokenResponse(f *testing.F) {
	addVectorSeeds(f, func(v *privacyPassVector) []byte { return append([]byte{0}, v.TokenResponse...) })
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, in := respType(data)
		fuzzParse(t, in, func(b []byte) (*TokenResponse, error) { return ParseTokenResponse(typ, b) },
			func(v *TokenResponse) ([]byte, error) { return v.Bytes(), nil })
	})
}

func FuzzParseBatchTokenRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzParse(t, data, ParseBatchTokenRequest, (*BatchTokenRequest).Bytes)
	})
}

func FuzzParseBatchTokenResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, in := respType(data)
		fuzzParse(t, in, func(b []byte) (*BatchTokenResponse, error) { return ParseBatchTokenResponse(typ, b) },
			(*BatchTokenResponse).Bytes)
	})
}

// FuzzParseKeyDirectory checks the JSON issuer directory: no panic, a
// known error, and a re-encoding that parses to the same directory (JSON
// has many encodings of one value, so bytes may differ).
func FuzzParseKeyDirectory(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseKeyDirectory(data)
		if err != nil {
			if d != nil || !isKnown(err) {
				t.Fatalf("ParseKeyDirectory: %v, %v", d, err)
			}
			return
		}
		enc, err := d.Bytes()
		require.NoError(t, err)
		d2, err := ParseKeyDirectory(enc)
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

// FuzzParseAuthorization checks the RFC 9577 credential parser: no panic,
// a known error, and a token that survives re-encoding.
func FuzzParseAuthorization(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseAuthorization(string(data))
		if err != nil {
			if tok != nil || !isKnown(err) {
				t.Fatalf("ParseAuthorization: %x, %v", tok, err)
			}
			return
		}
		again, err := ParseAuthorization(AuthorizationHeader(tok))
		if err != nil || !bytes.Equal(again, tok) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

// FuzzParseWWWAuthenticate checks the RFC 9577 challenge parser: no
// panic, a known error, and challenges that survive re-encoding.
func FuzzParseWWWAuthenticate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		chs, err := ParseWWWAuthenticate(string(data))
		if err != nil {
			if chs != nil || !isKnown(err) {
				t.Fatalf("ParseWWWAuthenticate: %v, %v", chs, err)
			}
			return
		}
		for _, c := range chs {
			again, err := ParseWWWAuthenticate(c.String())
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], c) {
				t.Fatalf("re-encoding %q: %v", c.String(), err)
			}
		}
	})
}

// FuzzAccept feeds envelopes to a server with both schemes: nothing may
// panic, and every refusal must match a known error. (The seeds hold valid
// tokens of the same master secret, so some are accepted once.)
func FuzzAccept(f *testing.F) {
	si := newSimpleIssuer(f, nil)
	pp := newPPIssuer(f, TokenTypeVOPRFP384, nil)
	server := NewServer(si, pp)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := server.Accept(data)
		if err == nil {
			if d == nil || d.Message == nil {
				t.Fatal("accepted with no delivery")
			}
			return
		}
		if d != nil || !isKnown(err) {
			t.Fatalf("Accept: %v, %v", d, err)
		}
	})
}

// fuzzTargets lists the fuzz targets with committed seeds.
var fuzzTargets = []string{
	"FuzzParseEnvelope", "FuzzParseToken", "FuzzParseTokenChallenge", "FuzzParseTokenRequest",
	"FuzzParseTokenResponse", "FuzzParseBatchTokenRequest", "FuzzParseBatchTokenResponse",
	"FuzzParseKeyDirectory", "FuzzAccept", "FuzzParseWWWAuthenticate", "FuzzParseAuthorization",
}

// TestFuzzSeeds checks that every fuzz target has committed seeds where go
// test finds them. With SEALEDSENDER_WRITE_SEEDS=1 it first writes them.
func TestFuzzSeeds(t *testing.T) {
	if os.Getenv("SEALEDSENDER_WRITE_SEEDS") == "1" {
		writeSeeds(t)
	}
	for _, name := range fuzzTargets {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", name, "*"))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no seeds in testdata/fuzz/%s", name, name)
		}
	}
}

func writeSeeds(t *testing.T) {
	seeds := map[string][][]byte{}
	add := func(name string, b []byte) { seeds[name] = append(seeds[name], b) }
	for _, tt := range tokenTypes {
		iss := newPPIssuer(t, tt, &IssuerConfig{BatchedTokensDraft: true})
		c := ppClient(t, iss)
		pending, req, err := c.RequestBatch(groupChallenges(c, []byte("group"), 2))
		require.NoError(t, err)
		resp, err := iss.IssueBatch("seed", req)
		require.NoError(t, err)
		toks, err := pending.Finalize(resp)
		require.NoError(t, err)
		prefix := byte(0)
		if tt == TokenTypeVOPRFRistretto255 {
			prefix = 1
		}
		add("FuzzParseBatchTokenRequest", req)
		add("FuzzParseBatchTokenResponse", append([]byte{prefix}, resp...))
		br, _ := ParseBatchTokenRequest(req)
		single := &TokenRequest{tt, br.TruncatedTokenKeyID, br.BlindedMsgs[0]}
		add("FuzzParseTokenRequest", single.Bytes())
		bresp, _ := ParseBatchTokenResponse(tt, resp)
		add("FuzzParseTokenResponse", append([]byte{prefix}, (&TokenResponse{bresp.EvaluatedMsgs[0], bresp.EvaluatedProof}).Bytes()...))
		add("FuzzParseToken", toks[0])
		ch, _ := iss.Challenge().Bytes()
		add("FuzzParseTokenChallenge", ch)
		dir, _ := iss.Keys()
		d, _ := dir.Bytes()
		add("FuzzParseKeyDirectory", d)
		ac, _ := iss.AuthChallenge([]byte("group"), 60)
		add("FuzzParseWWWAuthenticate", []byte(`Basic realm="x", `+ac.String()))
		add("FuzzParseWWWAuthenticate", []byte(AuthorizationHeader(toks[0])))
		add("FuzzParseAuthorization", []byte(AuthorizationHeader(toks[0])))
		add("FuzzParseAuthorization", []byte(`PrivateToken foo=bar, token=`+strings.TrimRight(AuthorizationHeader(toks[1])[20:], `"=`)))
		env, _ := Seal(SchemePrivacyPass, toks[1], privateMessage([]byte("group"), 5, 1, []byte("ct")), []int{})
		add("FuzzParseEnvelope", env)
		add("FuzzAccept", env)
	}
	simple, _ := Seal(SchemeSimple, make([]byte, 32), privateMessage([]byte("g"), 0, 3, nil), nil)
	add("FuzzParseEnvelope", simple)
	add("FuzzAccept", simple)
	for name, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for i, b := range list {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(content), 0o644))
		}
	}
}
