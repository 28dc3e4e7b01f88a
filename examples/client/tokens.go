package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// Sealed sending (package sealedsender). Every group message this client
// sends is a PrivateMessage (mls.HandshakePrivate), so it goes to the
// server in a sealed envelope: the message and a one-time Privacy Pass
// token, no sender. The server checks the token and cannot tell whom it
// was issued to.
//
// A token is bound to one group when it is made (its challenge's
// redemption context is derived from the group ID, blinded from the
// issuer), so the client keeps a stock of tokens per group, as application
// records of the group ("token/ID") in the group's store. It fills the
// stock ahead of need, at times of its own: when it creates or joins a
// group, and from a background job on a jittered timer when the stock runs
// low. Sending never talks to the issuer: it takes a token from the stock,
// or fails if there is none. Were it to fetch right before sending, the
// server would see "alice fetched a token" just before "an envelope
// arrived" and link the two. The issuer still learns, from how often an
// account refills, roughly how many messages it sends.
//
// A token is taken from the stock in the same atomic save that puts the
// sealed envelope in the outbox ("outbox-sealed", or "commit-envelope"
// with a stored commit), so a token is never used for two messages, and a
// restart after a crash sends the same envelope again, which the server
// answers as the same message.
//
// Key consistency: the client refuses issuer keys for periods it does not
// expect (sealedsender.NewKeyView, through NewPrivacyPassClient), pins the
// challenge it was given, refuses a challenge that is not bound to the
// group asked about or names another key than the directory, and puts its view's
// tag (sealedsender.KeyView.Tag) in the authenticated data of every
// message it sends; receivers check it against their own view. A mismatch
// means the server gave someone a key of their own, to recognize their
// tokens: the client says so and stops fetching tokens.

const (
	// tokenBatch is how many tokens a refill fetches for a group.
	tokenBatch = 8
	// tokenLow is the stock below which the background job refills.
	tokenLow = 4
	// tokenPeriod is the issuer's key period, from the client's own
	// configuration (it must match the server's), not from the directory
	// a hostile server writes.
	tokenPeriod = 24 * time.Hour
	// tokenRecordPrefix starts the keys of the token records.
	tokenRecordPrefix = "token/"
)

var errNoTokens = errors.New("no token for this group yet; the background job fetches some ahead of need")

// wallet is the client's view of the issuer. Its fields are guarded by
// client.mu.
type wallet struct {
	pp     *sealedsender.PrivacyPassClient
	period int64                        // the period pp is for
	base   *sealedsender.TokenChallenge // the challenge first seen, pinned
	// mismatch is set when a group member's view differed from ours: no
	// more tokens are fetched.
	mismatch error
}

// storedToken is one token of a group's stock.
type storedToken struct {
	key       string // record key
	notBefore int64  // the issuer key's not-before: the token's period
	token     []byte
}

func tokenRecord(t storedToken) mls.Record {
	v := binary.BigEndian.AppendUint64(nil, uint64(t.notBefore))
	return mls.Record{Key: []byte(t.key), Value: append(v, t.token...)}
}

func parseTokenRecord(r mls.Record) (storedToken, bool) {
	if !strings.HasPrefix(string(r.Key), tokenRecordPrefix) || len(r.Value) <= 8 {
		return storedToken{}, false
	}
	return storedToken{key: string(r.Key), notBefore: int64(binary.BigEndian.Uint64(r.Value)), token: r.Value[8:]}, true
}

func periodOf(t time.Time) int64 { return t.Unix() / int64(tokenPeriod/time.Second) }

// dropExpired drops the tokens of m's stock whose period is over for good
// (tokens are accepted in their key's period and the next one) and returns
// the records that delete them.
func (m *member) dropExpired(now time.Time) []mls.Record {
	var del []mls.Record
	oldest := (periodOf(now) - 1) * int64(tokenPeriod/time.Second)
	for k, t := range m.tokens {
		if t.notBefore < oldest {
			delete(m.tokens, k)
			del = append(del, mls.Record{Key: []byte(k)})
		}
	}
	return del
}

// takeToken returns the oldest token of m's stock and the record that
// deletes it, to be saved with the envelope that spends it. It never
// fetches.
func (m *member) takeToken() (storedToken, mls.Record, error) {
	if len(m.tokens) == 0 {
		return storedToken{}, mls.Record{}, errNoTokens
	}
	keys := make([]string, 0, len(m.tokens))
	for k := range m.tokens {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := m.tokens[keys[i]], m.tokens[keys[j]]
		return a.notBefore < b.notBefore || a.notBefore == b.notBefore && a.key < b.key
	})
	t := m.tokens[keys[0]]
	return t, mls.Record{Key: []byte(t.key)}, nil
}

// seal puts msg in a sealed envelope with a token of m's stock. It returns
// the envelope and the records to save before sending it: the token's
// deletion. The caller removes the token from the stock once saved.
func (m *member) seal(msg *mls.MLSMessage) ([]byte, storedToken, []mls.Record, error) {
	t, del, err := m.takeToken()
	if err != nil {
		return nil, t, nil, err
	}
	env, err := sealedsender.SealMessage(sealedsender.SchemePrivacyPass, t.token, msg, nil)
	if err != nil {
		return nil, t, nil, err
	}
	return env, t, []mls.Record{del}, nil
}

// sendEnvelope sends a sealed envelope saved under the app record key
// recordKey. If the server refuses its token (it expired while the
// envelope waited, or the issuer's keys changed), it seals the same
// message again with another token of the stock, saves that envelope in
// place of the first, and sends it: the message is never encrypted again,
// so no key is reused, and no token is fetched on the way.
func (c *client) sendEnvelope(ctx context.Context, m *member, env []byte, recordKey string) (int64, error) {
	seq, err := c.ds.sendSealed(ctx, m.g.GroupID(), env)
	if !errors.Is(err, errUnauthorized) {
		return seq, err
	}
	c.out.printf("[%s] the server refused a token (%v); sealing the message again", m.name, err)
	e, err := sealedsender.ParseEnvelope(env)
	if err != nil {
		return 0, err
	}
	msg, err := mls.ParseMessage(e.Message)
	if err != nil {
		return 0, err
	}
	recs := m.dropExpired(time.Now())
	env, tok, del, err := m.seal(msg)
	if err != nil {
		if len(recs) > 0 {
			c.save(ctx, m, nil, recs...)
		}
		return 0, err
	}
	recs = append(append(recs, del...), mls.Record{Key: []byte(recordKey), Value: env})
	if err := c.save(ctx, m, nil, recs...); err != nil {
		return 0, err
	}
	delete(m.tokens, tok.key)
	return c.ds.sendSealed(ctx, m.g.GroupID(), env)
}

// issuer returns the client's Privacy Pass client for the current
// period. Once a period it fetches and checks what the server gives: the
// directory's keys (unexpected periods refused) and a challenge, which
// must be bound to the group asked about, be the challenge pinned at the
// first fetch, and name the directory's current key. It asks for the
// challenge of a random group ID: the client binds tokens to its groups
// itself (TokenChallenge.ForGroup), so that neither the challenge request
// nor the token requests tell the issuer which group the tokens are for.
func (c *client) issuer(ctx context.Context) (*sealedsender.PrivacyPassClient, error) {
	if c.wallet.mismatch != nil {
		return nil, c.wallet.mismatch
	}
	p := periodOf(time.Now())
	if c.wallet.pp != nil && c.wallet.period == p {
		return c.wallet.pp, nil
	}
	probe := make([]byte, 32)
	rand.Read(probe)
	ch, err := c.ds.challenge(ctx, probe)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ch.Challenge.RedemptionContext, sealedsender.GroupRedemptionContext(probe)) {
		return nil, fmt.Errorf("the server's challenge is not bound to the group asked about: %w", sealedsender.ErrUnexpectedKey)
	}
	base := *ch.Challenge
	base.RedemptionContext = nil
	if c.wallet.base != nil && !sameChallenge(c.wallet.base, &base) {
		return nil, fmt.Errorf("the server gave another challenge than before: %w", sealedsender.ErrKeyMismatch)
	}
	dir, err := c.ds.issuerDirectory(ctx)
	if err != nil {
		return nil, err
	}
	pp, err := sealedsender.NewPrivacyPassClient(dir, &base, &sealedsender.ClientConfig{Period: tokenPeriod})
	if err != nil {
		return nil, err
	}
	if ch.TokenKey != nil && !bytes.Equal(ch.TokenKey, pp.Key().PublicKey) {
		return nil, fmt.Errorf("the server's challenge names another key than its directory: %w", sealedsender.ErrKeyMismatch)
	}
	if c.wallet.base == nil {
		c.wallet.base = &base
	}
	c.wallet.pp, c.wallet.period = pp, p
	return pp, nil
}

// sameChallenge reports whether two base challenges are the same.
func sameChallenge(a, b *sealedsender.TokenChallenge) bool {
	return a.TokenType == b.TokenType && a.IssuerName == b.IssuerName && a.OriginInfo == b.OriginInfo &&
		bytes.Equal(a.RedemptionContext, b.RedemptionContext)
}

// refill fetches a batch of tokens for m's group if its stock is low, and
// saves them with the group. Callers hold c.mu and call it at times of
// their own, never on the way to sending.
func (c *client) refill(ctx context.Context, m *member) error {
	del := m.dropExpired(time.Now())
	if len(m.tokens) >= tokenLow {
		if len(del) > 0 {
			return c.save(ctx, m, nil, del...)
		}
		return nil
	}
	pp, err := c.issuer(ctx)
	if err != nil {
		return err
	}
	recs := del
	var got []storedToken
	for range tokenBatch {
		pending, req, err := pp.Request(pp.Challenge().ForGroup(m.g.GroupID()))
		if err != nil {
			return err
		}
		resp, err := c.ds.issue(ctx, c.name, req)
		if err != nil {
			return err
		}
		tok, err := pending.Finalize(resp)
		if err != nil {
			return err
		}
		id := sha256.Sum256(tok)
		t := storedToken{key: tokenRecordPrefix + hex.EncodeToString(id[:8]), notBefore: pp.Key().NotBefore, token: tok}
		got = append(got, t)
		recs = append(recs, tokenRecord(t))
	}
	if err := c.save(ctx, m, nil, recs...); err != nil {
		return err
	}
	for _, t := range got {
		m.tokens[t.key] = t
	}
	return nil
}

// refillAll is the background job: it tops up every group's stock.
func (c *client) refillAll(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.groups {
		if err := c.refill(ctx, m); err != nil && ctx.Err() == nil {
			c.out.printf("[%s] warning: fetching tokens: %v", m.name, err)
		}
	}
}

// tokenCount is the number of tokens in stock over all groups.
func (c *client) tokenCount() int {
	n := 0
	for _, m := range c.groups {
		n += len(m.tokens)
	}
	return n
}

// viewTag is the tag of the client's view of the issuer for m's group's
// current epoch, for the authenticated data of a message; nil if the
// client has no view yet (it never fetches one while sending).
func (c *client) viewTag(m *member) []byte {
	if c.wallet.pp == nil {
		return nil
	}
	tag, err := c.wallet.pp.View().Tag(m.g)
	if err != nil {
		return nil
	}
	return tag
}

// checkView compares the tag a member sent with this client's view, in the
// epoch the message was sent in (the group's current one).
func (c *client) checkView(m *member, res *mls.Processed) {
	if len(res.AuthenticatedData) == 0 || c.wallet.pp == nil || res.Epoch != m.g.Epoch() {
		return
	}
	if err := c.wallet.pp.View().Check(m.g, res.AuthenticatedData); err != nil {
		c.wallet.mismatch = fmt.Errorf("a member of %s has another view of the token issuer: %w", m.name, err)
		c.out.printf("[%s] WARNING: %s (leaf %d) was given other issuer keys than this client: the server may be tagging one of you; no more tokens are fetched",
			m.name, c.senderName(m, mls.LeafIndex(res.Sender.Index)), res.Sender.Index)
	}
}

// sendSealed posts a sealed envelope, on a connection of its own and with
// nothing that names the client, and returns the message's place in the
// group's log.
func (d *dsClient) sendSealed(ctx context.Context, groupID, env []byte) (int64, error) {
	var resp struct {
		Seq int64 `json:"seq"`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/groups/"+hex.EncodeToString(groupID)+"/envelopes", bytes.NewReader(env))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	data, err := d.doRequest(d.sealed, req)
	if err != nil {
		return 0, err
	}
	err = json.Unmarshal(data, &resp)
	return resp.Seq, err
}

// challenge asks the server for the PrivateToken challenge of a group's
// envelopes (RFC 9577): an envelope without a token gets a 401 with it.
func (d *dsClient) challenge(ctx context.Context, groupID []byte) (*sealedsender.AuthChallenge, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/groups/"+hex.EncodeToString(groupID)+"/envelopes", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.sealed.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return nil, fmt.Errorf("server: %s instead of a token challenge", resp.Status)
	}
	chs, err := sealedsender.ParseWWWAuthenticate(resp.Header.Get("WWW-Authenticate"))
	if err != nil {
		return nil, err
	}
	for _, ch := range chs {
		if ch.Challenge.TokenType == sealedsender.TokenTypeVOPRFP384 {
			return ch, nil
		}
	}
	return nil, fmt.Errorf("server: no challenge of token type %v", sealedsender.TokenTypeVOPRFP384)
}

// issuerDirectory fetches the issuer directory (RFC 9578, Section 4).
func (d *dsClient) issuerDirectory(ctx context.Context) (*sealedsender.KeyDirectory, error) {
	data, err := d.get(ctx, "/.well-known/private-token-issuer-directory")
	if err != nil {
		return nil, err
	}
	dir, err := sealedsender.ParseKeyDirectory(data)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(d.base)
	if err != nil {
		return nil, err
	}
	ref, err := url.Parse(dir.IssuerRequestURI)
	if err != nil {
		return nil, err
	}
	d.tokenURL = u.ResolveReference(ref).String()
	return dir, nil
}

// issue sends one TokenRequest as the logged-in account and returns the
// TokenResponse. This example has no accounts: the client names itself,
// where a real one authenticates.
func (d *dsClient) issue(ctx context.Context, account string, tokenRequest []byte) ([]byte, error) {
	if d.tokenURL == "" {
		return nil, errors.New("no issuer directory fetched")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.tokenURL, bytes.NewReader(tokenRequest))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/private-token-request")
	req.Header.Set(accountHeader, account)
	return d.doRequest(d.http, req)
}

// accountHeader names the account asking for tokens (examples/server).
const accountHeader = "MicroChat-Account"
