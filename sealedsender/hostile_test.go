package sealedsender

// Tests for the findings of issue M13 (sealed sender against a hostile
// server). Each fails on the code before M13.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/mls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
)

// TestStandardTokenRequest: a plain RFC 9578 TokenRequest (what any
// Privacy Pass client sends) is answered with a TokenResponse, and the
// batched draft is refused unless enabled.
func TestStandardTokenRequest(t *testing.T) {
	iss := newPPIssuer(t, TokenTypeVOPRFP384, nil)
	c := ppClient(t, iss)
	pending, req, err := c.Request(c.Challenge().ForGroup(testGroup))
	require.NoError(t, err)
	require.Len(t, req, 2+1+49, "RFC 9578 TokenRequest for 0x0001")
	parsed, err := ParseTokenRequest(req)
	require.NoError(t, err)
	require.Equal(t, req, parsed.Bytes())
	resp, err := iss.Issue("alice", req)
	require.NoError(t, err)
	require.Len(t, resp, 49+2*48, "RFC 9578 TokenResponse for 0x0001")
	tok, err := pending.Finalize(resp)
	require.NoError(t, err)
	require.Len(t, tok, 2+32+32+32+48)
	require.NoError(t, iss.Redeem(tok, testGroup))

	_, breq, err := c.RequestBatch(groupChallenges(c, testGroup, 2))
	require.NoError(t, err)
	_, err = iss.IssueBatch("alice", breq)
	require.ErrorIs(t, err, ErrUnsupportedProtocol)
	// A batch request sent to the RFC 9578 endpoint is refused by its size.
	_, err = iss.Issue("alice", breq)
	require.ErrorIs(t, err, ErrMalformed)
}

// TestDirectoryJSON: the directory is the RFC 9578 issuer directory.
func TestDirectoryJSON(t *testing.T) {
	iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{IssuerRequestURI: "https://issuer.example/token-request"})
	dir, err := iss.Keys()
	require.NoError(t, err)
	enc, err := dir.Bytes()
	require.NoError(t, err)
	var generic struct {
		URI  string `json:"issuer-request-uri"`
		Keys []struct {
			Type      int    `json:"token-type"`
			Key       string `json:"token-key"`
			NotBefore int64  `json:"not-before"`
		} `json:"token-keys"`
	}
	require.NoError(t, json.Unmarshal(enc, &generic))
	require.Equal(t, "https://issuer.example/token-request", generic.URI)
	require.Len(t, generic.Keys, 3)
	for i, k := range generic.Keys {
		require.Equal(t, 1, k.Type)
		require.True(t, strings.HasSuffix(k.Key, "="), "base64url with padding")
		require.Equal(t, dir.Keys[i].PublicKey, mustB64(t, k.Key))
		require.Equal(t, dir.Keys[i].NotBefore, k.NotBefore)
	}
	// A directory written by someone else, with unknown fields and a key
	// without padding, parses.
	other := `{"issuer-request-uri":"/r","token-keys":[{"token-type":2,"token-key":"AAEC","x":1},` +
		`{"token-type":1,"token-key":"` + strings.TrimRight(generic.Keys[1].Key, "=") + `","not-before":5}],"extra":true}`
	d, err := ParseKeyDirectory([]byte(other))
	require.NoError(t, err)
	require.Len(t, d.Keys, 2)
	require.Equal(t, dir.Keys[1].PublicKey, d.Keys[1].PublicKey)
	for _, bad := range []string{``, `{}`, `{"issuer-request-uri":"/r"}`, `{"issuer-request-uri":"/r","token-keys":[{"token-type":1,"token-key":"!"}]}`,
		`{"issuer-request-uri":"/r","token-keys":[{"token-type":70000,"token-key":"AA=="}]}`, strings.Repeat(" ", MaxDirectorySize+1)} {
		_, err := ParseKeyDirectory([]byte(bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func mustB64(t *testing.T, s string) []byte {
	b, err := decodeBase64URL(s)
	require.NoError(t, err)
	return b
}

// TestClientRefusesUnexpectedKeys: a client refuses a directory whose
// keys are not one per expected period.
func TestClientRefusesUnexpectedKeys(t *testing.T) {
	clk := newClock()
	iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{Now: clk.now})
	dir, err := iss.Keys()
	require.NoError(t, err)
	cfg := &ClientConfig{Now: clk.now}
	_, err = NewPrivacyPassClient(dir, iss.Challenge(), cfg)
	require.NoError(t, err)

	// A key the server made for this client alone, as the key of a far
	// period, of no period, or as a second key of the current period.
	tagger, err := NewPrivacyPassIssuer(bytes.Repeat([]byte{7}, 32), testChallenge(TokenTypeVOPRFP384), withMemory(nil))
	require.NoError(t, err)
	tk, err := tagger.key(12345, 0)
	require.NoError(t, err)
	day := int64(24 * 3600)
	cur := clk.now().Unix() / day * day
	for name, extra := range map[string]IssuerKey{
		"far-future":     {TokenTypeVOPRFP384, tk.pub.PublicKey, cur + 30*day},
		"far-past":       {TokenTypeVOPRFP384, tk.pub.PublicKey, cur - 30*day},
		"no-not-before":  {TokenTypeVOPRFP384, tk.pub.PublicKey, 0},
		"not-a-boundary": {TokenTypeVOPRFP384, tk.pub.PublicKey, cur + 3600},
		"second-current": {TokenTypeVOPRFP384, tk.pub.PublicKey, cur},
	} {
		d := *dir
		d.Keys = append([]IssuerKey{extra}, dir.Keys...)
		_, err := NewPrivacyPassClient(&d, iss.Challenge(), cfg)
		assert.ErrorIs(t, err, ErrUnexpectedKey, name)
	}
	// No key for the current period (only the previous one).
	d := &KeyDirectory{IssuerRequestURI: "/r", Keys: dir.Keys[2:]}
	_, err = NewPrivacyPassClient(d, iss.Challenge(), cfg)
	require.ErrorIs(t, err, ErrUnexpectedKey)
	// A base challenge with a redemption context the server chose.
	ch := iss.Challenge()
	ch.RedemptionContext = bytes.Repeat([]byte{1}, 32)
	_, err = NewPrivacyPassClient(dir, ch, cfg)
	require.ErrorIs(t, err, ErrUnexpectedKey)
}

// twoMembers returns a two-member group as seen by each member.
func twoMembers(t *testing.T) (*mls.Group, *mls.Group) {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	cfg := &mls.Config{Handshake: mls.HandshakePrivate}
	id := func(name string) (mls.Credential, *mls.SignaturePrivateKey) {
		sig, err := cs.GenerateSignatureKey()
		require.NoError(t, err)
		return mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}, sig
	}
	ac, as := id("alice")
	bc, bs := id("bob")
	alice, err := mls.NewGroup(cs, ac, as, nil, cfg)
	require.NoError(t, err)
	kp, err := mls.GenerateKeyPackage(cs, bc, bs, nil)
	require.NoError(t, err)
	pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	require.NoError(t, alice.MergePendingCommit(pc))
	bob, err := mls.Join(pc.Welcome, kp, nil, cfg)
	require.NoError(t, err)
	return alice, bob
}

// TestGroupKeyComparison: members compare their views through the group,
// in the authenticated data of their messages, and catch a server that
// gave one of them its own key or its own challenge.
func TestGroupKeyComparison(t *testing.T) {
	clk := newClock()
	iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{Now: clk.now})
	alice, bob := twoMembers(t)
	honest := ppClient(t, iss).View()

	// Alice sends her tag with a message; Bob, with the same view, agrees.
	tag, err := honest.Tag(alice)
	require.NoError(t, err)
	require.Len(t, tag, KeyViewTagSize)
	msg, err := alice.EncryptApplication([]byte("hi"), tag)
	require.NoError(t, err)
	res, err := bob.Process(msg)
	require.NoError(t, err)
	require.NoError(t, honest.Check(bob, res.AuthenticatedData))
	// After a key rotation, the previous period's tag still matches.
	clk.advance(24 * time.Hour)
	rotated := ppClient(t, iss).View()
	require.NoError(t, rotated.Check(bob, tag))

	// A key of the tagging server's own, for the right period, is caught
	// by both sides; so is another challenge with the right key.
	clk.advance(-24 * time.Hour)
	tagger := newPPIssuerMaster(t, bytes.Repeat([]byte{7}, 32), testChallenge(TokenTypeVOPRFP384), clk)
	ownKey := ppClient(t, tagger).View()
	otherCh := testChallenge(TokenTypeVOPRFP384)
	otherCh.OriginInfo = "alice.delivery.microchat.example"
	ownChallenge := newPPIssuerMaster(t, testMaster, otherCh, clk)
	for name, v := range map[string]*KeyView{"own-key": ownKey, "own-challenge": ppClient(t, ownChallenge).View()} {
		tagged, err := v.Tag(alice)
		require.NoError(t, err)
		require.ErrorIs(t, honest.Check(bob, tagged), ErrKeyMismatch, name)
		require.ErrorIs(t, v.Check(alice, tag), ErrKeyMismatch, name)
	}
	// No tag, or a tag of another epoch, does not pass either.
	require.ErrorIs(t, honest.Check(bob, nil), ErrKeyMismatch)
	pc, err := alice.Commit(&mls.CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, alice.MergePendingCommit(pc))
	require.ErrorIs(t, honest.Check(alice, tag), ErrKeyMismatch)
}

func newPPIssuerMaster(t *testing.T, master []byte, ch *TokenChallenge, clk *clock) *PrivacyPassIssuer {
	iss, err := NewPrivacyPassIssuer(master, ch, withMemory(&IssuerConfig{Now: clk.now}))
	require.NoError(t, err)
	return iss
}

// TestNoSilentMemoryStore: issuers need stores, and a store shared by two
// issuers (a restart, or a second replica) keeps a token spent.
func TestNoSilentMemoryStore(t *testing.T) {
	mem := NewMemoryStore()
	for name, cfg := range map[string]*IssuerConfig{
		"nil":       nil,
		"no-spent":  {Quotas: mem},
		"no-quotas": {Spent: mem},
	} {
		_, err := NewPrivacyPassIssuer(testMaster, testChallenge(TokenTypeVOPRFP384), cfg)
		assert.ErrorIs(t, err, ErrNoStore, name)
		_, err = NewSimpleIssuer(mem, cfg)
		assert.ErrorIs(t, err, ErrNoStore, name)
	}
	_, err := NewSimpleIssuer(nil, &IssuerConfig{Spent: mem, Quotas: mem})
	require.ErrorIs(t, err, ErrNoStore)

	shared := &IssuerConfig{Spent: NewMemoryStore(), Quotas: NewMemoryStore()}
	first := newPPIssuer(t, TokenTypeVOPRFP384, shared)
	tok := fetchPP(t, first, ppClient(t, first), "alice", 1)[0]
	require.NoError(t, first.Redeem(tok, testGroup))
	restarted := newPPIssuer(t, TokenTypeVOPRFP384, shared)
	require.ErrorIs(t, restarted.Redeem(tok, testGroup), ErrDoubleSpend)
}

// TestTokenBoundToGroup: a token lifted from an envelope onto one for
// another group is refused without being spent, and the genuine envelope
// then goes through.
func TestTokenBoundToGroup(t *testing.T) {
	for _, tt := range tokenTypes {
		iss := newPPIssuer(t, tt, nil)
		server := NewServer(iss)
		tok := fetchPP(t, iss, ppClient(t, iss), "alice", 1)[0]
		genuine, err := Seal(SchemePrivacyPass, tok, privateMessage(testGroup, 1, 1, []byte("for group 1")), nil)
		require.NoError(t, err)
		lifted, err := Seal(SchemePrivacyPass, tok, privateMessage([]byte("group-2"), 1, 1, []byte("spam")), nil)
		require.NoError(t, err)
		_, err = server.Accept(lifted)
		require.ErrorIs(t, err, ErrInvalidToken)
		d, err := server.Accept(genuine)
		require.NoError(t, err)
		require.Equal(t, testGroup, d.GroupID)
		// The group context is what binds: the same token under the base
		// challenge (no group) is refused too.
		require.ErrorIs(t, iss.RedeemChallenge(tok, iss.Challenge()), ErrInvalidToken)
	}
	// The redemption context depends on the whole group ID.
	require.NotEqual(t, GroupRedemptionContext([]byte("a")), GroupRedemptionContext([]byte("a\x00")))
	require.Len(t, GroupRedemptionContext(nil), 32)
}

// oversizedBatch returns a batched-tokens draft request for n tokens whose
// body is one byte longer than n elements, so that parsing it (which would
// copy all of it) ends in ErrMalformed: only a size check made first
// returns ErrBatchSize.
func oversizedBatch(t testing.TB, iss *PrivacyPassIssuer, n int) []byte {
	now := iss.cfg.period(iss.cfg.Now())
	k, err := iss.key(now, 0)
	require.NoError(t, err)
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(iss.tokenType))
		b.AddUint8(k.id[31])
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, n*iss.params.ne+1)) })
	})
}

// TestOversizedBatchRefusedFirst: a 4.9 MB batch request is refused by its
// size, before it is parsed.
func TestOversizedBatchRefusedFirst(t *testing.T) {
	iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{BatchedTokensDraft: true})
	req := oversizedBatch(t, iss, 100000)
	require.Greater(t, len(req), 4_900_000)
	_, err := iss.IssueBatch("alice", req)
	require.ErrorIs(t, err, ErrBatchSize, "refused by size, not by parsing")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 5 {
		_, _ = iss.IssueBatch("alice", req)
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10), "refusing must not copy the request")
	// Just over the limit by count is also refused by size.
	_, err = iss.IssueBatch("alice", oversizedBatch(t, iss, 101))
	require.ErrorIs(t, err, ErrBatchSize)
	// A wrong type or key ID is refused before the elements are read.
	wrong := bytes.Clone(oversizedBatch(t, iss, 2))
	wrong[2] ^= 0xff
	_, err = iss.IssueBatch("alice", wrong)
	require.ErrorIs(t, err, ErrUnknownKey)
	binary.BigEndian.PutUint16(wrong, 2)
	_, err = iss.IssueBatch("alice", wrong)
	require.ErrorIs(t, err, ErrUnsupportedTokenType)
	// The same checks on an RFC 9578 request: its size is fixed.
	_, err = iss.Issue("alice", req)
	require.ErrorIs(t, err, ErrMalformed)
}

// TestCheapChecksBeforeVerify: the rate-limit hook sees only tokens that
// passed every cheap check, and a refusal leaves the token unspent.
func TestCheapChecksBeforeVerify(t *testing.T) {
	var calls int
	var limit bool
	iss := newPPIssuer(t, TokenTypeVOPRFP384, &IssuerConfig{BeforeVerify: func(g []byte) error {
		calls++
		if !bytes.Equal(g, testGroup) {
			t.Errorf("hook for group %q", g)
		}
		if limit {
			return errors.New("too many tokens for this group")
		}
		return nil
	}})
	tok := fetchPP(t, iss, ppClient(t, iss), "alice", 1)[0]
	cheap := map[string][]byte{
		"short":      tok[:len(tok)-1],
		"type":       append([]byte{0, 5}, tok[2:]...),
		"challenge":  func() []byte { b := bytes.Clone(tok); b[40] ^= 1; return b }(),
		"key-id":     func() []byte { b := bytes.Clone(tok); b[70] ^= 1; return b }(),
		"random-146": make([]byte, len(tok)),
	}
	for name, bad := range cheap {
		require.Error(t, iss.Redeem(bad, testGroup), name)
	}
	require.Zero(t, calls, "cheap refusals must not reach the hook")
	forged := bytes.Clone(tok)
	forged[len(forged)-1] ^= 1
	require.ErrorIs(t, iss.Redeem(forged, testGroup), ErrInvalidToken)
	require.Equal(t, 1, calls)
	limit = true
	require.ErrorIs(t, iss.Redeem(tok, testGroup), ErrRateLimited)
	limit = false
	require.NoError(t, iss.Redeem(tok, testGroup), "a rate-limited token stays unspent")
}

// TestClockSkew: keys of the next period are accepted within the clock
// skew, for issuance and for redemption, so a replica whose clock is
// behind does not refuse valid tokens.
func TestClockSkew(t *testing.T) {
	boundary := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	ahead := &clock{}
	ahead.t.Store(boundary.Add(time.Minute).Unix())
	behind := &clock{}
	behind.t.Store(boundary.Add(-2 * time.Minute).Unix())
	shared := withMemory(nil)
	cfgAt := func(c *clock, skew time.Duration) *IssuerConfig {
		cfg := *shared
		cfg.Now, cfg.ClockSkew = c.now, skew
		return &cfg
	}
	// A replica whose clock is just past midnight issues under the new key.
	front := newPPIssuer(t, TokenTypeVOPRFP384, cfgAt(ahead, 0))
	tok := fetchPP(t, front, ppClient(t, front), "alice", 2)
	// A replica two minutes behind accepts it within the default skew.
	back := newPPIssuer(t, TokenTypeVOPRFP384, cfgAt(behind, 0))
	require.NoError(t, back.Redeem(tok[0], testGroup))
	// A client whose clock is ahead requests under the next key from it.
	c := ppClient(t, front)
	pending, req, err := c.Request(c.Challenge().ForGroup(testGroup))
	require.NoError(t, err)
	resp, err := back.Issue("bob", req)
	require.NoError(t, err)
	_, err = pending.Finalize(resp)
	require.NoError(t, err)
	// A whole period behind: refused with a short skew, accepted with a
	// skew of one period.
	dayBehind := &clock{}
	dayBehind.t.Store(boundary.Add(-23 * time.Hour).Unix())
	require.ErrorIs(t, newPPIssuer(t, TokenTypeVOPRFP384, cfgAt(dayBehind, 0)).Redeem(tok[1], testGroup), ErrUnknownKey)
	require.NoError(t, newPPIssuer(t, TokenTypeVOPRFP384, cfgAt(dayBehind, 24*time.Hour)).Redeem(tok[1], testGroup))
	// Beyond the skew, the next key is not accepted for issuance.
	early := &clock{}
	early.t.Store(boundary.Add(-time.Hour).Unix())
	_, err = newPPIssuer(t, TokenTypeVOPRFP384, cfgAt(early, 0)).Issue("carol", req)
	require.ErrorIs(t, err, ErrUnknownKey)
}

// TestPrivateTokenHTTP: the WWW-Authenticate challenge and the
// Authorization credential of RFC 9577 encode and parse, among other
// schemes and parameters, quoted or not, with or without padding.
func TestPrivateTokenHTTP(t *testing.T) {
	iss := newPPIssuer(t, TokenTypeVOPRFP384, nil)
	ac, err := iss.AuthChallenge(testGroup, 3600)
	require.NoError(t, err)
	h := ac.String()
	require.True(t, strings.HasPrefix(h, `PrivateToken challenge="`))
	require.Contains(t, h, `token-key="`)
	require.Contains(t, h, `max-age=3600`)
	chs, err := ParseWWWAuthenticate(`Basic realm="a, b", ` + h + `, PrivateToken challenge="AAIAAA==", token-key=x, Bearer abc/def==`)
	require.NoError(t, err)
	require.Len(t, chs, 1, "the 0x0002 challenge is ignored")
	require.Equal(t, ac, chs[0])

	// A standard client answers the challenge as given.
	dir, err := iss.Keys()
	require.NoError(t, err)
	require.Equal(t, dir.Keys[1].PublicKey, chs[0].TokenKey)
	client, err := NewPrivacyPassClientForKey(&IssuerKey{TokenType: TokenTypeVOPRFP384, PublicKey: chs[0].TokenKey}, chs[0].Challenge)
	require.NoError(t, err)
	pending, req, err := client.Request(chs[0].Challenge)
	require.NoError(t, err)
	resp, err := iss.Issue("alice", req)
	require.NoError(t, err)
	tok, err := pending.Finalize(resp)
	require.NoError(t, err)
	auth := AuthorizationHeader(tok)
	got, err := ParseAuthorization(auth)
	require.NoError(t, err)
	require.Equal(t, tok, got)
	require.NoError(t, iss.Redeem(got, testGroup))

	// Unquoted, unpadded, other parameters, other case.
	unq := strings.NewReplacer(`"`, ``, `=,`, `,`).Replace(strings.TrimRight(auth, `="`))
	got, err = ParseAuthorization("privatetoken  foo=bar, " + strings.TrimPrefix(unq, "PrivateToken "))
	require.NoError(t, err)
	require.Equal(t, tok, got)
	for _, bad := range []string{"", "Basic abc", `PrivateToken token="!!"`, `PrivateToken foo=1`, `PrivateToken token="a`,
		`PrivateToken token=AAAA, token=AAAA`, strings.Repeat("a", MaxHeaderSize+1)} {
		_, err := ParseAuthorization(bad)
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
	for _, bad := range []string{"", `Basic realm="x"`, `PrivateToken challenge="AAEA"`, `PrivateToken challenge=@`} {
		_, err := ParseWWWAuthenticate(bad)
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}
