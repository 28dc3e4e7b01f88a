package sealedsender

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/microchat/e2ee/mls"
	"github.com/stretchr/testify/require"
)

// clock is a settable time source for issuers.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	c.t.Store(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Unix())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(c.t.Load(), 0) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d / time.Second)) }

var testMaster = bytes.Repeat([]byte{0x42}, 32)

func testChallenge(t TokenType) *TokenChallenge {
	return &TokenChallenge{TokenType: t, IssuerName: "issuer.microchat.example", OriginInfo: "delivery.microchat.example"}
}

var tokenTypes = []TokenType{TokenTypeVOPRFP384, TokenTypeVOPRFRistretto255}

// testGroup is the group the test tokens are bound to.
var testGroup = []byte("group-1")

// withMemory returns cfg (or a new config) with explicit in-memory stores
// where it has none, as tests may.
func withMemory(cfg *IssuerConfig) *IssuerConfig {
	var c IssuerConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Spent == nil || c.Quotas == nil {
		m := NewMemoryStore()
		if c.Spent == nil {
			c.Spent = m
		}
		if c.Quotas == nil {
			c.Quotas = m
		}
	}
	return &c
}

func newPPIssuer(t testing.TB, tt TokenType, cfg *IssuerConfig) *PrivacyPassIssuer {
	t.Helper()
	iss, err := NewPrivacyPassIssuer(testMaster, testChallenge(tt), withMemory(cfg))
	require.NoError(t, err)
	return iss
}

func newSimpleIssuer(t testing.TB, cfg *IssuerConfig) *SimpleIssuer {
	t.Helper()
	c := withMemory(cfg)
	si, err := NewSimpleIssuer(NewMemoryStore(), c)
	require.NoError(t, err)
	return si
}

// ppClient builds a client from the issuer's published directory, as an
// application would, with the issuer's clock and period.
func ppClient(t testing.TB, iss *PrivacyPassIssuer) *PrivacyPassClient {
	t.Helper()
	dir, err := iss.Keys()
	require.NoError(t, err)
	enc, err := dir.Bytes()
	require.NoError(t, err)
	dir, err = ParseKeyDirectory(enc)
	require.NoError(t, err)
	c, err := NewPrivacyPassClient(dir, iss.Challenge(), &ClientConfig{Now: iss.cfg.Now, Period: iss.cfg.Period})
	require.NoError(t, err)
	return c
}

// fetchPP fetches n tokens bound to testGroup with RFC 9578 requests.
func fetchPP(t testing.TB, iss *PrivacyPassIssuer, c *PrivacyPassClient, account string, n int) [][]byte {
	t.Helper()
	var toks [][]byte
	for range n {
		pending, req, err := c.Request(c.Challenge().ForGroup(testGroup))
		require.NoError(t, err)
		resp, err := iss.Issue(account, req)
		require.NoError(t, err)
		tok, err := pending.Finalize(resp)
		require.NoError(t, err)
		toks = append(toks, tok)
	}
	return toks
}

// groupChallenges returns n copies of c's base challenge bound to group.
func groupChallenges(c *PrivacyPassClient, group []byte, n int) []*TokenChallenge {
	out := make([]*TokenChallenge, n)
	for i := range out {
		out[i] = c.Challenge().ForGroup(group)
	}
	return out
}

// fetchPPBatch fetches n tokens bound to testGroup in one batched-tokens
// draft request.
func fetchPPBatch(t testing.TB, iss *PrivacyPassIssuer, c *PrivacyPassClient, account string, n int) [][]byte {
	t.Helper()
	pending, req, err := c.RequestBatch(groupChallenges(c, testGroup, n))
	require.NoError(t, err)
	resp, err := iss.IssueBatch(account, req)
	require.NoError(t, err)
	toks, err := pending.Finalize(resp)
	require.NoError(t, err)
	if len(toks) != n {
		t.Fatalf("got %d tokens, want %d", len(toks), n)
	}
	return toks
}

func fetchSimple(t testing.TB, iss *SimpleIssuer, account string, n int) [][]byte {
	t.Helper()
	req, err := NewSimpleRequest(n)
	require.NoError(t, err)
	resp, err := iss.Issue(account, req)
	require.NoError(t, err)
	toks, err := ParseSimpleResponse(resp, n)
	require.NoError(t, err)
	return toks
}

// scheme bundles an issuer/redeemer with a way to fetch tokens from it.
type scheme struct {
	name   string
	r      Redeemer
	clk    *clock
	fetch  func(t testing.TB, account string, n int) [][]byte
	issuer Issuer
	// request returns a fresh request for one token.
	request func(t testing.TB) []byte
}

func allSchemes(t testing.TB) []scheme { return allSchemesQuota(t, 0) }

func allSchemesQuota(t testing.TB, quota int) []scheme {
	var out []scheme
	clk := newClock()
	si := newSimpleIssuer(t, &IssuerConfig{Now: clk.now, Quota: quota})
	out = append(out, scheme{"simple", si, clk, func(t testing.TB, a string, n int) [][]byte { return fetchSimple(t, si, a, n) }, si,
		func(t testing.TB) []byte { r, _ := NewSimpleRequest(1); return r }})
	for _, tt := range tokenTypes {
		clk := newClock()
		iss := newPPIssuer(t, tt, &IssuerConfig{Now: clk.now, Quota: quota})
		out = append(out, scheme{fmt.Sprintf("privacypass-%04x", uint16(tt)), iss, clk, func(t testing.TB, a string, n int) [][]byte {
			return fetchPP(t, iss, ppClient(t, iss), a, n)
		}, iss, func(t testing.TB) []byte {
			c := ppClient(t, iss)
			_, req, err := c.Request(c.Challenge().ForGroup(testGroup))
			require.NoError(t, err)
			return req
		}})
	}
	clk = newClock()
	batched := newPPIssuer(t, TokenTypeVOPRFRistretto255, &IssuerConfig{Now: clk.now, Quota: quota, BatchedTokensDraft: true})
	out = append(out, scheme{"privacypass-0005-batched", batched, clk, func(t testing.TB, a string, n int) [][]byte {
		return fetchPPBatch(t, batched, ppClient(t, batched), a, n)
	}, batchIssuer{batched}, func(t testing.TB) []byte {
		c := ppClient(t, batched)
		_, req, err := c.RequestBatch(groupChallenges(c, testGroup, 1))
		require.NoError(t, err)
		return req
	}})
	return out
}

// batchIssuer is the [Issuer] of a batched-tokens draft issuer.
type batchIssuer struct{ *PrivacyPassIssuer }

func (b batchIssuer) Issue(account string, req []byte) ([]byte, error) {
	return b.IssueBatch(account, req)
}

func TestRedeemOnce(t *testing.T) {
	for _, s := range allSchemes(t) {
		t.Run(s.name, func(t *testing.T) {
			toks := s.fetch(t, "alice", 32)
			for i, tok := range toks {
				require.NoError(t, s.r.Redeem(tok, testGroup), "token %d", i)
				if err := s.r.Redeem(tok, testGroup); !errors.Is(err, ErrDoubleSpend) {
					t.Fatalf("token %d again: %v, want ErrDoubleSpend", i, err)
				}
			}
		})
	}
}

func TestConcurrentRedeem(t *testing.T) {
	const goroutines, tokens = 64, 16
	for _, s := range allSchemes(t) {
		t.Run(s.name, func(t *testing.T) {
			toks := s.fetch(t, "alice", tokens)
			var accepted [tokens]atomic.Int32
			var otherErr atomic.Value
			var wg sync.WaitGroup
			start := make(chan struct{})
			for g := range goroutines {
				wg.Go(func() {
					<-start
					for k := range tokens {
						i := (k + g) % tokens // different goroutines start on different tokens
						err := s.r.Redeem(toks[i], testGroup)
						switch {
						case err == nil:
							accepted[i].Add(1)
						case !errors.Is(err, ErrDoubleSpend):
							otherErr.Store(err)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			require.Nil(t, otherErr.Load(), "unexpected error")
			for i := range accepted {
				if n := accepted[i].Load(); n != 1 {
					t.Errorf("token %d accepted %d times", i, n)
				}
			}
		})
	}
}

func TestRetiredKey(t *testing.T) {
	for _, s := range allSchemes(t) {
		t.Run(s.name, func(t *testing.T) {
			toks := s.fetch(t, "alice", 3)
			s.clk.advance(24 * time.Hour) // next period: still accepted
			require.NoError(t, s.r.Redeem(toks[0], testGroup), "previous period's token")
			s.clk.advance(24 * time.Hour) // two periods on: refused
			err := s.r.Redeem(toks[1], testGroup)
			if !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrExpired) {
				t.Fatalf("retired token: %v, want ErrUnknownKey or ErrExpired", err)
			}
			if s.r.Scheme() == SchemePrivacyPass && !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("retired privacy pass token: %v, want ErrUnknownKey", err)
			}
		})
	}
	t.Run("request-with-old-key", func(t *testing.T) {
		clk := newClock()
		iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{Now: clk.now})
		c := ppClient(t, iss)
		clk.advance(24*time.Hour + time.Hour) // past the clock skew
		_, req, err := c.Request(c.Challenge().ForGroup(testGroup))
		require.NoError(t, err)
		if _, err := iss.Issue("alice", req); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("issuing under the previous key: %v, want ErrUnknownKey", err)
		}
	})
}

func TestKeyRotation(t *testing.T) {
	clk := newClock()
	iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{Now: clk.now})
	d1, err := iss.Keys()
	require.NoError(t, err)
	// A second issuer with the same master secret derives the same keys.
	d2, err := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{Now: clk.now}).Keys()
	require.NoError(t, err)
	b1, _ := d1.Bytes()
	b2, _ := d2.Bytes()
	require.Equal(t, b1, b2)
	// Next, current and previous period, in that order, on period starts.
	require.Len(t, d1.Keys, 3)
	day := int64(24 * 3600)
	cur := clk.now().Unix() / day * day
	for i, want := range []int64{cur + day, cur, cur - day} {
		require.Equal(t, want, d1.Keys[i].NotBefore)
	}
	require.NotEqual(t, d1.Keys[0].PublicKey, d1.Keys[1].PublicKey)
	// Truncated key IDs of consecutive periods differ (RFC 9578, §5.5).
	require.NotEqual(t, d1.Keys[0].ID()[31], d1.Keys[1].ID()[31])
	require.NotEqual(t, d1.Keys[1].ID()[31], d1.Keys[2].ID()[31])
	clk.advance(24 * time.Hour)
	d3, err := iss.Keys()
	require.NoError(t, err)
	require.Equal(t, d1.Keys[0].ID(), d3.Keys[1].ID(), "the current key is the former next key")
	require.Equal(t, d1.Keys[1].ID(), d3.Keys[2].ID(), "the previous key is the former current key")
}

func TestQuota(t *testing.T) {
	for _, s := range allSchemesQuota(t, 30) {
		t.Run(s.name, func(t *testing.T) {
			for range 3 {
				s.fetch(t, "alice", 10)
			}
			req := s.request(t)
			if _, err := s.issuer.Issue("alice", req); !errors.Is(err, ErrQuotaExceeded) {
				t.Fatalf("over quota: %v, want ErrQuotaExceeded", err)
			}
			if _, err := s.issuer.Issue("bob", req); err != nil {
				t.Fatalf("another account: %v", err)
			}
			s.clk.advance(24 * time.Hour)
			req = s.request(t)
			if _, err := s.issuer.Issue("alice", req); err != nil {
				t.Fatalf("next period: %v", err)
			}
		})
	}
	t.Run("batch-size", func(t *testing.T) {
		si := newSimpleIssuer(t, &IssuerConfig{MaxBatch: 8})
		req, _ := NewSimpleRequest(9)
		if _, err := si.Issue("alice", req); !errors.Is(err, ErrBatchSize) {
			t.Fatalf("batch of 9 over 8: %v, want ErrBatchSize", err)
		}
		iss := newPPIssuer(t, TokenTypeVOPRFRistretto255, &IssuerConfig{MaxBatch: 8, BatchedTokensDraft: true})
		c := ppClient(t, iss)
		_, req, _ = c.RequestBatch(groupChallenges(c, testGroup, 9))
		if _, err := iss.IssueBatch("alice", req); !errors.Is(err, ErrBatchSize) {
			t.Fatalf("batch of 9 over 8: %v, want ErrBatchSize", err)
		}
	})
}

// knownErrors are the sentinels every failure on peer input must match.
var knownErrors = []error{
	ErrMalformed, ErrUnsupportedScheme, ErrUnsupportedTokenType, ErrInvalidToken, ErrDoubleSpend,
	ErrUnknownKey, ErrExpired, ErrInvalidProof, ErrQuotaExceeded, ErrBatchSize, ErrKeyMismatch,
	ErrNotPrivateMessage, ErrUnsupportedVersion, ErrUnexpectedKey, ErrRateLimited, ErrUnsupportedProtocol,
}

func isKnown(err error) bool {
	for _, k := range knownErrors {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

func TestTamperedToken(t *testing.T) {
	for _, tt := range tokenTypes {
		t.Run(fmt.Sprintf("privacypass-%04x", uint16(tt)), func(t *testing.T) {
			iss := newPPIssuer(t, tt, nil)
			tok := fetchPP(t, iss, ppClient(t, iss), "alice", 1)[0]
			fields := []struct {
				name string
				off  int
				want error
			}{
				{"token_type", 1, ErrUnsupportedTokenType},
				{"nonce", 2, ErrInvalidToken},
				{"challenge_digest", 34, ErrInvalidToken},
				{"token_key_id", 66, ErrUnknownKey},
				{"authenticator", 98, ErrInvalidToken},
				{"authenticator-last", len(tok) - 1, ErrInvalidToken},
			}
			for _, f := range fields {
				bad := bytes.Clone(tok)
				bad[f.off] ^= 0x01
				if err := iss.Redeem(bad, testGroup); !errors.Is(err, f.want) {
					t.Errorf("%s flipped: %v, want %v", f.name, err, f.want)
				}
			}
			for _, bad := range [][]byte{tok[:len(tok)-1], append(bytes.Clone(tok), 0), nil} {
				if err := iss.Redeem(bad, testGroup); !errors.Is(err, ErrMalformed) {
					t.Errorf("token of %d bytes: %v, want ErrMalformed", len(bad), err)
				}
			}
			// None of that spent the real token.
			require.NoError(t, iss.Redeem(tok, testGroup), "genuine token after tampering")
		})
	}
	t.Run("simple", func(t *testing.T) {
		si := newSimpleIssuer(t, nil)
		tok := fetchSimple(t, si, "alice", 1)[0]
		bad := bytes.Clone(tok)
		bad[5] ^= 0x80
		if err := si.Redeem(bad, nil); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("flipped: %v, want ErrInvalidToken", err)
		}
		if err := si.Redeem(tok[:31], nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("short: %v, want ErrMalformed", err)
		}
		require.NoError(t, si.Redeem(tok, nil))
	})
}

func TestTamperedProof(t *testing.T) {
	for _, tt := range tokenTypes {
		t.Run(fmt.Sprintf("privacypass-%04x", uint16(tt)), func(t *testing.T) {
			p, _ := tt.params()
			iss := newPPIssuer(t, tt, &IssuerConfig{BatchedTokensDraft: true})
			c := ppClient(t, iss)
			pending, req, err := c.RequestBatch(groupChallenges(c, testGroup, 4))
			require.NoError(t, err)
			resp, err := iss.IssueBatch("alice", req)
			require.NoError(t, err)
			proofStart := len(resp) - 2*p.ns
			// Flipping the low bit of a scalar keeps it in range, so the
			// proof parses and must fail to verify.
			for _, off := range []int{proofStart + p.ns - 1, len(resp) - 1} {
				if tt == TokenTypeVOPRFRistretto255 {
					off -= p.ns - 1 // ristretto255 scalars are little-endian
				}
				bad := bytes.Clone(resp)
				bad[off] ^= 0x01
				if _, err := pending.Finalize(bad); !errors.Is(err, ErrInvalidProof) {
					t.Errorf("proof byte %d flipped: %v, want ErrInvalidProof", off, err)
				}
			}
			// An evaluation by another key, with a valid proof for that key.
			other, err := NewPrivacyPassIssuer(bytes.Repeat([]byte{9}, 32), testChallenge(tt), withMemory(&IssuerConfig{BatchedTokensDraft: true}))
			require.NoError(t, err)
			breq, _ := ParseBatchTokenRequest(req)
			now := other.cfg.period(other.cfg.Now())
			k, _ := other.key(now, 0)
			breq.TruncatedTokenKeyID = k.id[31]
			req2, _ := breq.Bytes()
			resp2, err := other.IssueBatch("alice", req2)
			require.NoError(t, err)
			if _, err := pending.Finalize(resp2); !errors.Is(err, ErrInvalidProof) {
				t.Errorf("response under another key: %v, want ErrInvalidProof", err)
			}
			// Truncated or reordered responses.
			if _, err := pending.Finalize(resp[:len(resp)-1]); !errors.Is(err, ErrMalformed) {
				t.Errorf("truncated: %v, want ErrMalformed", err)
			}
			r, _ := ParseBatchTokenResponse(tt, resp)
			r.EvaluatedMsgs[0], r.EvaluatedMsgs[1] = r.EvaluatedMsgs[1], r.EvaluatedMsgs[0]
			swapped, _ := r.Bytes()
			if _, err := pending.Finalize(swapped); !errors.Is(err, ErrInvalidProof) {
				t.Errorf("reordered: %v, want ErrInvalidProof", err)
			}
			r.EvaluatedMsgs = r.EvaluatedMsgs[:3]
			short, _ := r.Bytes()
			if _, err := pending.Finalize(short); !errors.Is(err, ErrBatchSize) {
				t.Errorf("3 of 4: %v, want ErrBatchSize", err)
			}
			// The genuine response still works, once.
			toks, err := pending.Finalize(resp)
			if err != nil || len(toks) != 4 {
				t.Fatalf("genuine response: %v", err)
			}
			if _, err := pending.Finalize(resp); err == nil {
				t.Fatal("second Finalize succeeded")
			}
		})
	}
}

// privateMessage returns an MLSMessage holding a PrivateMessage with the
// given public fields and an opaque body.
func privateMessage(groupID []byte, epoch uint64, contentType uint8, body []byte) []byte {
	m := &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPrivateMessage, PrivateMessage: &mls.PrivateMessage{
		GroupID: groupID, Epoch: epoch, ContentType: mls.ContentType(contentType),
		AuthenticatedData:   []byte{},
		EncryptedSenderData: bytes.Repeat([]byte{0xe5}, 20),
		Ciphertext:          body,
	}}
	out, err := m.Bytes()
	if err != nil {
		panic(err)
	}
	return out
}

func TestEnvelope(t *testing.T) {
	for _, s := range allSchemes(t) {
		t.Run(s.name, func(t *testing.T) {
			server := NewServer(s.r)
			toks := s.fetch(t, "alice", 4)
			group := []byte("group-1")
			for ct := uint8(1); ct <= 3; ct++ { // application, proposal, commit
				msg := privateMessage(group, 7, ct, []byte("ciphertext"))
				env, err := Seal(s.r.Scheme(), toks[ct], msg, nil)
				require.NoError(t, err)
				d, err := server.Accept(env)
				require.NoError(t, err, "content type %d", ct)
				if !bytes.Equal(d.GroupID, group) || d.Epoch != 7 || !bytes.Equal(d.Message, msg) {
					t.Fatalf("delivery = %+v", d)
				}
				if _, err := server.Accept(env); !errors.Is(err, ErrDoubleSpend) {
					t.Fatalf("replayed envelope: %v, want ErrDoubleSpend", err)
				}
			}
		})
	}
}

func TestEnvelopeRefused(t *testing.T) {
	si := newSimpleIssuer(t, nil)
	server := NewServer(si)
	toks := fetchSimple(t, si, "alice", 1)
	msg := privateMessage([]byte("g"), 1, 1, []byte("x"))
	good, err := Seal(SchemeSimple, toks[0], msg, []int{})
	require.NoError(t, err)
	publicMessage := bytes.Clone(msg)
	publicMessage[3] = 1 // wire format mls_public_message
	if _, err := Seal(SchemeSimple, toks[0], publicMessage, nil); !errors.Is(err, ErrNotPrivateMessage) {
		t.Errorf("Seal of a PublicMessage: %v, want ErrNotPrivateMessage", err)
	}
	seal := func(e Envelope) []byte {
		b, err := e.Bytes()
		require.NoError(t, err)
		return b
	}
	base := Envelope{Version: EnvelopeVersion, Scheme: SchemeSimple, Token: toks[0], Message: msg}
	withMsg := func(m []byte) []byte { e := base; e.Message = m; return seal(e) }
	cases := []struct {
		name string
		env  []byte
		want error
	}{
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), ErrMalformed},
		{"nonzero-padding", func() []byte { e := base; e.Padding = 3; b := seal(e); b[len(b)-1] = 1; return b }(), ErrMalformed},
		{"version", func() []byte { e := base; e.Version = 2; return seal(e) }(), ErrUnsupportedVersion},
		{"scheme", func() []byte { e := base; e.Scheme = SchemePrivacyPass; return seal(e) }(), ErrUnsupportedScheme},
		{"public-message", withMsg(publicMessage), ErrNotPrivateMessage},
		{"welcome", func() []byte { m := bytes.Clone(msg); m[3] = 3; return withMsg(m) }(), ErrNotPrivateMessage},
		{"mls-version", func() []byte { m := bytes.Clone(msg); m[1] = 2; return withMsg(m) }(), ErrNotPrivateMessage},
		{"content-type", withMsg(privateMessage([]byte("g"), 1, 4, nil)), ErrMalformed},
		{"message-trailing", withMsg(append(bytes.Clone(msg), 0)), ErrMalformed},
		{"bad-token", func() []byte { e := base; e.Token = make([]byte, 32); return seal(e) }(), ErrInvalidToken},
	}
	for _, c := range cases {
		if _, err := server.Accept(c.env); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// None of the refused envelopes spent the token.
	if _, err := server.Accept(good); err != nil {
		t.Fatalf("genuine envelope: %v", err)
	}
}

func TestEnvelopePadding(t *testing.T) {
	tok := make([]byte, 146)
	sizes := map[int]bool{}
	for n := 0; n < 70000; n += 1 + n/7 {
		msg := privateMessage([]byte("group"), 1, 1, make([]byte, n))
		env, err := Seal(SchemePrivacyPass, tok, msg, nil)
		require.NoError(t, err)
		e, err := ParseEnvelope(env)
		require.NoError(t, err)
		require.Equal(t, msg, e.Message, "message changed")
		ok := len(env)%DefaultBuckets[len(DefaultBuckets)-1] == 0
		for _, b := range DefaultBuckets {
			ok = ok || len(env) == b
		}
		if !ok {
			t.Fatalf("message of %d bytes: envelope of %d bytes is not a bucket size", len(msg), len(env))
		}
		sizes[len(env)] = true
	}
	if len(sizes) < len(DefaultBuckets) {
		t.Fatalf("only %d distinct sizes", len(sizes))
	}
	// Every remainder, including those a varint header cannot fill exactly
	// (65, 16386 bytes), lands in some bucket.
	for n := 0; n < 600; n++ {
		msg := privateMessage(nil, 0, 1, make([]byte, n))
		env, err := Seal(SchemeSimple, make([]byte, 32), msg, []int{256, 512, 1024})
		require.NoError(t, err)
		if l := len(env); l != 256 && l != 512 && l != 1024 {
			t.Fatalf("n=%d: envelope of %d bytes", n, l)
		}
	}
}

// TestEnvelopeHasNoSender checks that nothing the server handles names the
// sender: the envelope's and the delivery's fields are exactly the
// expected ones, and an envelope is a function of the token and the
// message alone.
func TestEnvelopeHasNoSender(t *testing.T) {
	fields := func(v any) []string {
		var out []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			out = append(out, typ.Field(i).Name)
		}
		return out
	}
	if got, want := fields(Envelope{}), []string{"Version", "Scheme", "Token", "Message", "Padding"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Envelope fields = %v, want %v", got, want)
	}
	if got, want := fields(Delivery{}), []string{"GroupID", "Epoch", "Message"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Delivery fields = %v, want %v", got, want)
	}
	for _, name := range append(fields(Envelope{}), fields(Delivery{})...) {
		for _, bad := range []string{"sender", "leaf", "identity", "account", "credential"} {
			if strings.Contains(strings.ToLower(name), bad) {
				t.Errorf("field %s names the sender", name)
			}
		}
	}
	// Two senders sealing the same message with the same token produce the
	// same bytes: there is no input through which a sender could appear.
	msg := privateMessage([]byte("g"), 3, 1, []byte("body"))
	tok := bytes.Repeat([]byte{1}, 32)
	a, _ := Seal(SchemeSimple, tok, msg, nil)
	b, _ := Seal(SchemeSimple, tok, msg, nil)
	require.Equal(t, b, a, "Seal is not a function of the token and the message")
}

// TestPrivacyPassUnlinkable checks what the issuer sees at issuance has
// nothing in common with what it sees at redemption, and that blinding
// hides even a repeated token input.
func TestPrivacyPassUnlinkable(t *testing.T) {
	for _, tt := range tokenTypes {
		t.Run(fmt.Sprintf("privacypass-%04x", uint16(tt)), func(t *testing.T) {
			iss := newPPIssuer(t, tt, &IssuerConfig{BatchedTokensDraft: true})
			c := ppClient(t, iss)
			var transcript [][]byte // everything the issuer saw at issuance
			var tokens [][]byte
			for _, account := range []string{"alice", "bob"} {
				pending, req, err := c.RequestBatch(groupChallenges(c, testGroup, 8))
				require.NoError(t, err)
				resp, err := iss.IssueBatch(account, req)
				require.NoError(t, err)
				toks, err := pending.Finalize(resp)
				require.NoError(t, err)
				transcript = append(transcript, req, resp)
				tokens = append(tokens, toks...)
			}
			for _, tok := range tokens {
				parsed, _ := ParseToken(tok)
				// The only parts a token shares with issuance are public
				// constants: the type, the challenge digest and the key ID.
				for _, secretPart := range [][]byte{parsed.Nonce[:], parsed.Authenticator} {
					for w := 0; w+8 <= len(secretPart); w++ {
						for _, seen := range transcript {
							if bytes.Contains(seen, secretPart[w:w+8]) {
								t.Fatalf("issuance transcript contains bytes of a token")
							}
						}
					}
				}
			}
			// The same token input blinded twice gives unrelated requests.
			nonce := [][32]byte{{1}}
			ch := groupChallenges(c, testGroup, 1)
			_, r1, _ := c.request(ch, nonce, nil)
			_, r2, _ := c.request(ch, nonce, nil)
			if bytes.Equal(r1[0], r2[0]) {
				t.Fatal("blinding is deterministic")
			}
		})
	}
}

func TestWireRoundTrip(t *testing.T) {
	iss := newPPIssuer(t, TokenTypeVOPRFP384, nil)
	c := ppClient(t, iss)
	_, req, _ := c.RequestBatch(groupChallenges(c, testGroup, 3))
	r, err := ParseBatchTokenRequest(req)
	require.NoError(t, err)
	if b, _ := r.Bytes(); !bytes.Equal(b, req) || len(r.BlindedMsgs) != 3 {
		t.Fatal("batch request round trip")
	}
	bad := bytes.Clone(req)
	bad[0], bad[1] = 0, 2
	if _, err := ParseBatchTokenRequest(bad); !errors.Is(err, ErrUnsupportedTokenType) {
		t.Fatalf("blind RSA request: %v", err)
	}
	ch := &TokenChallenge{TokenType: 1, IssuerName: "", OriginInfo: ""}
	if _, err := ch.Bytes(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty issuer name: %v", err)
	}
	ch = &TokenChallenge{TokenType: 1, IssuerName: "i", RedemptionContext: make([]byte, 5)}
	if _, err := ch.Bytes(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("5-byte redemption context: %v", err)
	}
	ch.RedemptionContext = make([]byte, 32)
	enc, err := ch.Bytes()
	require.NoError(t, err)
	ch2, err := ParseTokenChallenge(enc)
	if err != nil || !reflect.DeepEqual(ch, ch2) {
		t.Fatalf("challenge round trip: %v %+v", err, ch2)
	}
}

// TestSealedGroupMessage sends real MLS messages of a two-member group
// through sealed envelopes: the server routes them by group ID without
// learning the sender, and the recipient learns the sender only from the
// decrypted message.
func TestSealedGroupMessage(t *testing.T) {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	cfg := &mls.Config{Handshake: mls.HandshakePrivate}
	newID := func(name string) (mls.Credential, *mls.SignaturePrivateKey) {
		sig, err := cs.GenerateSignatureKey()
		require.NoError(t, err)
		return mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}, sig
	}
	aliceCred, aliceSig := newID("alice")
	bobCred, bobSig := newID("bob")
	alice, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, cfg)
	require.NoError(t, err)
	bobKP, err := mls.GenerateKeyPackage(cs, bobCred, bobSig, nil)
	require.NoError(t, err)
	pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{bobKP.KeyPackage}})
	require.NoError(t, err)
	require.NoError(t, alice.MergePendingCommit(pc))
	bob, err := mls.Join(pc.Welcome, bobKP, nil, cfg)
	require.NoError(t, err)

	issuer := newSimpleIssuer(t, nil)
	server := NewServer(issuer)
	toks := fetchSimple(t, issuer, "alice", 2)

	// An application message and a commit (a PrivateMessage under the
	// HandshakePrivate policy) both travel sealed.
	app, err := alice.EncryptApplication([]byte("sealed hello"), nil)
	require.NoError(t, err)
	upd, err := alice.Commit(&mls.CommitOptions{ForcePath: true})
	require.NoError(t, err)
	for i, m := range []*mls.MLSMessage{app, upd.Commit} {
		env, err := SealMessage(SchemeSimple, toks[i], m, nil)
		require.NoError(t, err)
		if bytes.Contains(env, aliceSig.PublicKey()) || bytes.Contains(env, []byte("alice")) {
			t.Fatal("envelope carries the sender's identity or key")
		}
		d, err := server.Accept(env)
		require.NoError(t, err)
		require.Equal(t, bob.GroupID(), d.GroupID, "routed to the wrong group")
		msg, err := mls.ParseMessage(d.Message)
		require.NoError(t, err)
		res, err := bob.Process(msg)
		require.NoError(t, err)
		if res.Sender.Index != uint32(alice.OwnLeafIndex()) {
			t.Fatalf("bob sees sender %d", res.Sender.Index)
		}
		if i == 0 && string(res.ApplicationData) != "sealed hello" {
			t.Fatal("wrong plaintext")
		}
		if i == 1 {
			require.NoError(t, bob.Merge(res.Commit))
		}
	}
	// A PublicMessage (the default handshake policy) cannot be sealed.
	alice2, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, nil)
	require.NoError(t, err)
	prop, err := alice2.ProposeUpdate()
	require.NoError(t, err)
	if _, err := SealMessage(SchemeSimple, toks[0], prop, nil); !errors.Is(err, ErrNotPrivateMessage) {
		t.Fatalf("sealing a PublicMessage: %v", err)
	}
}
