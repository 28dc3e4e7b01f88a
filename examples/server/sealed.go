package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/microchat/e2ee/examples/store"
	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// Sealed sender on the delivery service (package sealedsender): the
// server is a Privacy Pass issuer (RFC 9578, token type 0x0001,
// VOPRF(P-384, SHA-384)) that hands tokens out to logged-in clients, and
// it accepts group PrivateMessages only in sealed envelopes paid for with
// such a token. An envelope carries a token and the message, and no sender:
// the server checks and spends the token (bound to the envelope's group,
// so that it cannot be lifted onto another), then logs the message exactly
// as POST /v1/groups/{group}/messages does. It cannot tell which account
// a token was issued to: issuance is blind.
//
//	GET  /.well-known/private-token-issuer-directory   the issuer directory (RFC 9578, Section 4, JSON)
//	POST /v1/token-request                 an RFC 9578 TokenRequest (application/private-token-request)
//	                                       from the account named by the MicroChat-Account header;
//	                                       answers a TokenResponse (application/private-token-response)
//	POST /v1/groups/{group}/envelopes      a sealed envelope holding a PrivateMessage of the group;
//	                                       JSON {seq} as for messages; 401 with a PrivateToken challenge
//	                                       (RFC 9577) for a missing, invalid or spent token
//
// Spent tokens and issuance quotas live in the server's database
// (examples/store's tables), so that a restart or a second server process
// on the same PostgreSQL database never accepts a token twice. The issuer's
// master secret is in the database too, so that its keys survive restarts.

const (
	// accountHeader names the account asking for tokens.
	accountHeader = "MicroChat-Account"
	// tokenRequestPath is the issuer-request-uri of the directory.
	tokenRequestPath = "/v1/token-request"
	// tokenPeriod is the issuer's key and quota period. Clients are
	// configured with the same value (it is not taken from the server).
	tokenPeriod = 24 * time.Hour
	// tokenQuota is how many tokens an account may fetch per period.
	tokenQuota = 2000
	// challengeMaxAge is the max-age of the WWW-Authenticate challenge.
	challengeMaxAge = 3600
)

// tokenChallenge is the issuer's base challenge: clients bind it to a
// group with [sealedsender.TokenChallenge.ForGroup].
var tokenChallenge = sealedsender.TokenChallenge{
	TokenType:  sealedsender.TokenTypeVOPRFP384,
	IssuerName: "issuer.microchat.example",
	OriginInfo: "delivery.microchat.example",
}

// tokens is the server's issuer and redeemer.
type tokens struct {
	db      *db
	store   *store.Store
	issuer  *sealedsender.PrivacyPassIssuer
	sealed  *sealedsender.Server
	limiter *verifyLimiter
}

// newTokens sets up the issuer on the server's database: the spent-token
// and quota tables of examples/store (its other tables stay empty on the
// server), the table linking each spent token to the message it paid for
// (see postEnvelope), and the issuer's master secret.
func newTokens(ctx context.Context, d *db, now func() time.Time) (*tokens, error) {
	dialect := store.SQLite
	if d.postgres {
		dialect = store.PostgreSQL
	}
	st, err := store.New(ctx, d.sql, dialect)
	if err != nil {
		return nil, err
	}
	blob, bigint := "BLOB", "INTEGER"
	if d.postgres {
		blob, bigint = "BYTEA", "BIGINT"
	}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ds_secrets (
			name TEXT PRIMARY KEY,
			value ` + blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ds_token_uses (
			token ` + blob + ` PRIMARY KEY,
			group_id ` + blob + ` NOT NULL,
			digest ` + blob + ` NOT NULL,
			created ` + bigint + ` NOT NULL)`,
	} {
		if _, err := d.sql.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("server: creating tables: %w", err)
		}
	}
	// The master secret from which every period's key is derived. The
	// first server process draws it; the others (and restarts) read it.
	// A real deployment keeps it in a key management service rather than
	// next to the data.
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	if _, err := d.sql.ExecContext(ctx, d.q(`INSERT INTO ds_secrets (name, value) VALUES ('privacypass-master', ?) ON CONFLICT DO NOTHING`), master); err != nil {
		return nil, err
	}
	clear(master)
	if err := d.sql.QueryRowContext(ctx, `SELECT value FROM ds_secrets WHERE name = 'privacypass-master'`).Scan(&master); err != nil {
		return nil, err
	}
	limiter := &verifyLimiter{now: now, perGroup: 1000, window: time.Minute, counts: map[string]int{}}
	issuer, err := sealedsender.NewPrivacyPassIssuer(master, &tokenChallenge, &sealedsender.IssuerConfig{
		Now:              now,
		Period:           tokenPeriod,
		Quota:            tokenQuota,
		Spent:            st,
		Quotas:           st,
		BeforeVerify:     limiter.allow,
		IssuerRequestURI: tokenRequestPath,
	})
	clear(master)
	if err != nil {
		return nil, err
	}
	return &tokens{db: d, store: st, issuer: issuer, sealed: sealedsender.NewServer(issuer), limiter: limiter}, nil
}

// verifyLimiter is the rate-limit hook of the issuer
// (sealedsender.IssuerConfig.BeforeVerify): it caps the token
// verifications, about half a millisecond each on P-384, spent on one
// group per window, so that forged tokens cannot make the server work
// without bound. It only sees tokens that passed the cheap checks (size,
// type, group binding, key ID). Redemption is anonymous, so it can only
// count per group; a real deployment also limits per connection before
// reading an envelope. Counts are in memory: they bound work, not tokens.
type verifyLimiter struct {
	now      func() time.Time
	perGroup int
	window   time.Duration

	mu     sync.Mutex
	start  time.Time
	counts map[string]int
}

var errTooManyVerifications = errors.New("server: too many token verifications for this group; retry later")

func (l *verifyLimiter) allow(groupID []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := l.now(); now.Sub(l.start) >= l.window {
		l.start, l.counts = now, map[string]int{}
	}
	if l.counts[string(groupID)] >= l.perGroup {
		return errTooManyVerifications
	}
	l.counts[string(groupID)]++
	return nil
}

// prune forgets spent tokens and quota counts of periods whose tokens are
// refused anyway (before the previous period), and the message links of
// tokens that old.
func (t *tokens) prune(ctx context.Context, now time.Time) error {
	period := uint64(now.Unix()) / uint64(tokenPeriod/time.Second)
	if period < 2 {
		return nil
	}
	if err := t.store.PruneSpent(ctx, period-1); err != nil {
		return err
	}
	if err := t.store.PruneQuotas(ctx, period-1); err != nil {
		return err
	}
	_, err := t.db.sql.ExecContext(ctx, t.db.q(`DELETE FROM ds_token_uses WHERE created < ?`), now.Add(-3*tokenPeriod).Unix())
	return err
}

// pruneLoop prunes every hour until ctx is done.
func (t *tokens) pruneLoop(ctx context.Context, out io.Writer) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		if err := t.prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "warning: pruning tokens: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// getIssuerDirectory serves the issuer directory (RFC 9578, Section 4):
// the keys of the previous, current and next period.
func (h *handler) getIssuerDirectory(w http.ResponseWriter, r *http.Request) {
	dir, err := h.tokens.issuer.Keys()
	if err != nil {
		fail(w, err)
		return
	}
	b, err := dir.Bytes()
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/private-token-issuer-directory")
	w.Write(b)
}

// postTokenRequest issues one token (RFC 9578, Section 5.2). The issuer
// sees only a blinded element: it learns who asked and when, not which
// token it helped make, nor for which group.
func (h *handler) postTokenRequest(w http.ResponseWriter, r *http.Request) {
	// This example has no accounts: the client names itself. A real
	// deployment authenticates the client here (a session, a signature)
	// and charges the quota to the authenticated account.
	account := r.Header.Get(accountHeader)
	if account == "" || len(account) > 255 {
		http.Error(w, "server: token requests need a "+accountHeader+" header", http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/private-token-request" {
		http.Error(w, "server: want Content-Type application/private-token-request", http.StatusUnsupportedMediaType)
		return
	}
	req, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	if err != nil {
		fail(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	resp, err := h.tokens.issuer.Issue(account, req)
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, sealedsender.ErrQuotaExceeded):
			status = http.StatusTooManyRequests
		case errors.Is(err, sealedsender.ErrMalformed), errors.Is(err, sealedsender.ErrUnsupportedTokenType),
			errors.Is(err, sealedsender.ErrUnknownKey):
		default:
			status = http.StatusInternalServerError
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/private-token-response")
	w.Write(resp)
}

// challenge answers 401 with a PrivateToken challenge (RFC 9577, Section
// 2.1) for envelopes to groupID: the base challenge bound to the group and
// the current key.
func (h *handler) challenge(w http.ResponseWriter, groupID []byte, reason error) {
	ch, err := h.tokens.issuer.AuthChallenge(groupID, challengeMaxAge)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("WWW-Authenticate", ch.String())
	http.Error(w, reason.Error(), http.StatusUnauthorized)
}

var errNoToken = errors.New("server: group PrivateMessages must come in a sealed envelope with a token (POST /v1/groups/{group}/envelopes)")

// postEnvelope accepts a sealed envelope: a group PrivateMessage and a
// token, no sender. It redeems the token for the message's group and logs
// the message as postMessage does (one commit per epoch, idempotent).
//
// Idempotence needs care, since a token is spent once: a client that
// crashed after sending sends the same envelope again, which must get the
// answer of the first time and not a double-spend refusal. So the server
// first looks the message up in the log (a message already logged is
// answered with its place, spending nothing), and it records which message
// each token pays for (ds_token_uses) before spending it: a token the
// server spent without logging the message (it crashed between the two)
// is accepted again for that message, and only for that one. A token
// lifted onto another message is refused as spent.
func (h *handler) postEnvelope(w http.ResponseWriter, r *http.Request) {
	groupID, err := hexParam(r, "group")
	if err != nil {
		fail(w, err)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		fail(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	if len(data) == 0 {
		h.challenge(w, groupID, errNoToken)
		return
	}
	env, err := sealedsender.ParseEnvelope(data)
	if err != nil {
		fail(w, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	m, err := mls.ParseMessage(env.Message)
	if err != nil {
		fail(w, err)
		return
	}
	if m.PrivateMessage == nil {
		fail(w, fmt.Errorf("%w: %w", errBadRequest, sealedsender.ErrNotPrivateMessage))
		return
	}
	if string(m.GroupID()) != string(groupID) {
		fail(w, fmt.Errorf("%w: message is for another group", errBadRequest))
		return
	}
	ctx := r.Context()
	digest := sha256.Sum256(env.Message)
	if seq, err := h.db.loggedMessage(ctx, groupID, digest[:]); err == nil {
		writeJSON(w, map[string]int64{"seq": seq}) // sent again: nothing to spend
		return
	} else if !errors.Is(err, errNotFound) {
		fail(w, err)
		return
	}
	// Cheap checks before anything is written: a well-formed token of the
	// issuer's type, made for this group. Accept checks them again, and
	// the rest.
	if err := h.tokens.forGroup(env.Token, groupID); err != nil {
		h.tokenFailure(w, groupID, err)
		return
	}
	tokenDigest := sha256.Sum256(env.Token)
	claimed, err := h.db.claimToken(ctx, tokenDigest[:], groupID, digest[:])
	if err != nil {
		fail(w, err)
		return
	}
	d, err := h.tokens.sealed.Accept(data)
	if errors.Is(err, sealedsender.ErrDoubleSpend) {
		// Spent already: accepted only if it was spent on this message.
		if same, lerr := h.db.tokenPaidFor(ctx, tokenDigest[:], groupID, digest[:]); lerr != nil {
			err = lerr
		} else if same {
			d, err = &sealedsender.Delivery{GroupID: groupID, Epoch: m.Epoch(), Message: env.Message}, nil
		}
	}
	if err != nil {
		if claimed && !errors.Is(err, sealedsender.ErrDoubleSpend) {
			h.db.releaseToken(ctx, tokenDigest[:]) // refused unspent: the token may still pay for something else
		}
		h.tokenFailure(w, groupID, err)
		return
	}
	commit := m.PrivateMessage.ContentType == mls.ContentTypeCommit
	seq, err := h.db.appendMessage(ctx, d.GroupID, d.Epoch, commit, d.Message)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, map[string]int64{"seq": seq})
}

// forGroup checks, without verifying it, that token is a Privacy Pass
// token of the issuer's type answering the issuer's challenge bound to
// groupID.
func (t *tokens) forGroup(token, groupID []byte) error {
	tok, err := sealedsender.ParseToken(token)
	if err != nil {
		return err
	}
	if tok.TokenType != tokenChallenge.TokenType {
		return fmt.Errorf("server: token of type %v: %w", tok.TokenType, sealedsender.ErrUnsupportedTokenType)
	}
	ch, err := t.issuer.Challenge().ForGroup(groupID).Bytes()
	if err != nil {
		return err
	}
	if sha256.Sum256(ch) != tok.ChallengeDigest {
		return fmt.Errorf("server: token made for another group or challenge: %w", sealedsender.ErrInvalidToken)
	}
	return nil
}

// tokenFailure answers a refused envelope: 401 with a fresh challenge for
// a token the issuer does not accept (RFC 9577, Section 2.1), 429 when
// rate limited, 400 for a malformed envelope.
func (h *handler) tokenFailure(w http.ResponseWriter, groupID []byte, err error) {
	switch {
	case errors.Is(err, sealedsender.ErrRateLimited):
		http.Error(w, err.Error(), http.StatusTooManyRequests)
	case errors.Is(err, sealedsender.ErrInvalidToken), errors.Is(err, sealedsender.ErrDoubleSpend),
		errors.Is(err, sealedsender.ErrUnknownKey), errors.Is(err, sealedsender.ErrExpired),
		errors.Is(err, sealedsender.ErrUnsupportedScheme), errors.Is(err, sealedsender.ErrUnsupportedTokenType):
		h.challenge(w, groupID, err)
	case errors.Is(err, sealedsender.ErrMalformed), errors.Is(err, sealedsender.ErrNotPrivateMessage),
		errors.Is(err, sealedsender.ErrUnsupportedVersion):
		fail(w, fmt.Errorf("%w: %w", errBadRequest, err))
	default:
		fail(w, err)
	}
}

// loggedMessage returns the place of a message in the group's log, or
// errNotFound.
func (d *db) loggedMessage(ctx context.Context, groupID, digest []byte) (int64, error) {
	var seq int64
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT id FROM ds_messages WHERE group_id = ? AND digest = ?`), groupID, digest).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNotFound
	}
	return seq, err
}

// claimToken records that the token with the given digest pays for the
// message with the given digest, unless the token already pays for a
// message. It reports whether it recorded it.
func (d *db) claimToken(ctx context.Context, token, groupID, digest []byte) (bool, error) {
	res, err := d.sql.ExecContext(ctx, d.q(`INSERT INTO ds_token_uses (token, group_id, digest, created) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`),
		token, groupID, digest, time.Now().Unix())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// tokenPaidFor reports whether the token pays for that message.
func (d *db) tokenPaidFor(ctx context.Context, token, groupID, digest []byte) (bool, error) {
	var g, dg []byte
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT group_id, digest FROM ds_token_uses WHERE token = ?`), token).Scan(&g, &dg)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil && string(g) == string(groupID) && string(dg) == string(digest), err
}

// releaseToken forgets the claim of a token that was refused unspent.
func (d *db) releaseToken(ctx context.Context, token []byte) {
	d.sql.ExecContext(ctx, d.q(`DELETE FROM ds_token_uses WHERE token = ?`), token)
}
