package sealedsender

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkPrivacyPass measures the three steps of one RFC 9578 token (the
// issuer's evaluation with its proof, the client's verification and
// unblinding, the redemption), and the same for a batch of 32 with the
// batched-tokens draft.
func BenchmarkPrivacyPass(b *testing.B) {
	const batch = 32
	for _, tt := range tokenTypes {
		name := fmt.Sprintf("type=%04x", uint16(tt))
		iss := newPPIssuer(b, tt, &IssuerConfig{Quota: 1 << 30, BatchedTokensDraft: true})
		c := ppClient(b, iss)
		ch := c.Challenge().ForGroup(testGroup)
		b.Run(name+"/issue", func(b *testing.B) {
			_, req, err := c.Request(ch)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := iss.Issue("bench", req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/finalize", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				p, req, err := c.Request(ch)
				if err != nil {
					b.Fatal(err)
				}
				resp, err := iss.Issue("bench", req)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := p.Finalize(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/issue/batch=32", func(b *testing.B) {
			_, req, err := c.RequestBatch(groupChallenges(c, testGroup, batch))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := iss.IssueBatch("bench", req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/finalize/batch=32", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				p, req, err := c.RequestBatch(groupChallenges(c, testGroup, batch))
				if err != nil {
					b.Fatal(err)
				}
				resp, err := iss.IssueBatch("bench", req)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := p.Finalize(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/redeem", func(b *testing.B) {
			var toks [][]byte
			for b.Loop() {
				if len(toks) == 0 {
					b.StopTimer()
					toks = fetchPPBatch(b, iss, c, "bench", 100)
					b.StartTimer()
				}
				if err := iss.Redeem(toks[0], testGroup); err != nil {
					b.Fatal(err)
				}
				toks = toks[1:]
			}
		})
	}
}

// BenchmarkForgedToken measures what refusing a forged token costs the
// server, by how much of it is right: random bytes of the right size, a
// token with a valid type and challenge digest but an unknown key ID, one
// lifted onto another group, and one whose public fields are all right but
// whose authenticator is forged (the only case that costs a VOPRF
// evaluation; [IssuerConfig.BeforeVerify] can refuse it before).
func BenchmarkForgedToken(b *testing.B) {
	iss := newPPIssuer(b, TokenTypeVOPRFP384, &IssuerConfig{Quota: 1 << 30})
	c := ppClient(b, iss)
	good := fetchPP(b, iss, c, "bench", 1)[0]
	random := make([]byte, len(good))
	rand.Read(random)
	wrongKey := bytes.Clone(good)
	wrongKey[70] ^= 1
	forged := bytes.Clone(good)
	forged[len(forged)-1] ^= 1
	for _, bc := range []struct {
		name  string
		tok   []byte
		group []byte
	}{
		{"random", random, testGroup},
		{"unknown-key", wrongKey, testGroup},
		{"other-group", good, []byte("group-2")},
		{"forged-authenticator", forged, testGroup},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := iss.Redeem(bc.tok, bc.group); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
	// The same forged token once the group's budget of verifications is
	// spent: the hook refuses it before the VOPRF evaluation.
	limited := newPPIssuer(b, TokenTypeVOPRFP384, &IssuerConfig{BeforeVerify: func([]byte) error { return ErrRateLimited }})
	if _, err := limited.Keys(); err != nil { // derive the keys outside the loop
		b.Fatal(err)
	}
	b.Run("forged-authenticator/rate-limited", func(b *testing.B) {
		for b.Loop() {
			if err := limited.Redeem(forged, testGroup); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}

// BenchmarkOversizedBatch measures refusing a batched-tokens draft request
// of 100,000 P-384 elements (4.9 MB) from an issuer whose limit is 100.
func BenchmarkOversizedBatch(b *testing.B) {
	iss := newPPIssuer(b, TokenTypeVOPRFP384, &IssuerConfig{Quota: 1 << 30, BatchedTokensDraft: true})
	req := oversizedBatch(b, iss, 100000)
	for b.Loop() {
		if _, err := iss.IssueBatch("bench", req); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkSimple measures issuing a batch of 32 simple tokens and
// redeeming one.
func BenchmarkSimple(b *testing.B) {
	si := newSimpleIssuer(b, &IssuerConfig{Quota: 1 << 30})
	b.Run("issue/batch=32", func(b *testing.B) {
		req, _ := NewSimpleRequest(32)
		for b.Loop() {
			resp, err := si.Issue("bench", req)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ParseSimpleResponse(resp, 32); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redeem", func(b *testing.B) {
		var toks [][]byte
		for b.Loop() {
			if len(toks) == 0 {
				b.StopTimer()
				toks = fetchSimple(b, si, "bench", 100)
				b.StartTimer()
			}
			if err := si.Redeem(toks[0], nil); err != nil {
				b.Fatal(err)
			}
			toks = toks[1:]
		}
	})
}

// BenchmarkEnvelope measures the server's step for one envelope: parse,
// redeem a simple token, route.
func BenchmarkEnvelope(b *testing.B) {
	si := newSimpleIssuer(b, &IssuerConfig{Quota: 1 << 30})
	server := NewServer(si)
	msg := privateMessage([]byte("group"), 1, 1, make([]byte, 1000))
	var envs [][]byte
	for b.Loop() {
		if len(envs) == 0 {
			b.StopTimer()
			for _, tok := range fetchSimple(b, si, "bench", 100) {
				env, err := Seal(SchemeSimple, tok, msg, nil)
				if err != nil {
					b.Fatal(err)
				}
				envs = append(envs, env)
			}
			b.StartTimer()
		}
		if _, err := server.Accept(envs[0]); err != nil {
			b.Fatal(err)
		}
		envs = envs[1:]
	}
}
