package sealedsender

import (
	"fmt"
	"testing"
)

// BenchmarkPrivacyPass measures the three steps of a batch of 32 tokens:
// the issuer's evaluation with its proof, the client's verification and
// unblinding, and the redemption of one token.
func BenchmarkPrivacyPass(b *testing.B) {
	const batch = 32
	for _, tt := range tokenTypes {
		name := fmt.Sprintf("type=%04x", uint16(tt))
		iss := newPPIssuer(b, tt, &IssuerConfig{Quota: 1 << 30})
		c := ppClient(b, iss)
		b.Run(name+"/issue/batch=32", func(b *testing.B) {
			_, req, err := c.Request(batch)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := iss.Issue("bench", req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/finalize/batch=32", func(b *testing.B) {
			var pendings []*PendingTokens
			var resps [][]byte
			for b.Loop() {
				b.StopTimer()
				if len(pendings) == 0 {
					for range 8 {
						p, req, err := c.Request(batch)
						if err != nil {
							b.Fatal(err)
						}
						resp, err := iss.Issue("bench", req)
						if err != nil {
							b.Fatal(err)
						}
						pendings, resps = append(pendings, p), append(resps, resp)
					}
				}
				p, resp := pendings[0], resps[0]
				pendings, resps = pendings[1:], resps[1:]
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
					toks = fetchPP(b, iss, c, "bench", 100)
					b.StartTimer()
				}
				if err := iss.Redeem(toks[0]); err != nil {
					b.Fatal(err)
				}
				toks = toks[1:]
			}
		})
	}
}

// BenchmarkSimple measures issuing a batch of 32 simple tokens and
// redeeming one.
func BenchmarkSimple(b *testing.B) {
	si := NewSimpleIssuer(nil, &IssuerConfig{Quota: 1 << 30})
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
			if err := si.Redeem(toks[0]); err != nil {
				b.Fatal(err)
			}
			toks = toks[1:]
		}
	})
}

// BenchmarkEnvelope measures the server's step for one envelope: parse,
// redeem a simple token, route.
func BenchmarkEnvelope(b *testing.B) {
	si := NewSimpleIssuer(nil, &IssuerConfig{Quota: 1 << 30})
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
