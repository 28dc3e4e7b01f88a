package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sealedEnv is a delivery service on a fresh SQLite database, with a
// Privacy Pass client that fetched its keys and challenge from it.
type sealedEnv struct {
	t    *testing.T
	path string
	pg   string // a PostgreSQL DSN instead of the SQLite file path
	d    *db
	tk   *tokens
	srv  *httptest.Server
	pp   *sealedsender.PrivacyPassClient
}

func newSealedEnv(t *testing.T, postgres bool) *sealedEnv {
	e := &sealedEnv{t: t, path: filepath.Join(t.TempDir(), "server.db")}
	if postgres {
		e.pg = postgresSchema(t)
	}
	e.start()
	// The directory is RFC 9578 JSON, and the challenge of a group comes
	// with a 401 to an envelope without a token.
	resp, err := http.Get(e.srv.URL + "/.well-known/private-token-issuer-directory")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "application/private-token-issuer-directory", resp.Header.Get("Content-Type"))
	dir, err := sealedsender.ParseKeyDirectory(body)
	require.NoError(t, err)
	require.Equal(t, tokenRequestPath, dir.IssuerRequestURI)
	ch := e.challenge([]byte("group-a"))
	base := *ch.Challenge
	base.RedemptionContext = nil
	e.pp, err = sealedsender.NewPrivacyPassClient(dir, &base, &sealedsender.ClientConfig{Period: tokenPeriod})
	require.NoError(t, err)
	require.Equal(t, e.pp.Key().PublicKey, ch.TokenKey, "the challenge names the directory's current key")
	return e
}

// start (re)starts the server on the same database.
func (e *sealedEnv) start() {
	if e.srv != nil {
		e.srv.Close()
		e.d.sql.Close()
	}
	ctx := context.Background()
	d, err := openDB(ctx, e.path, e.pg)
	require.NoError(e.t, err)
	tk, err := newTokens(ctx, d, time.Now)
	require.NoError(e.t, err)
	e.d, e.tk, e.srv = d, tk, httptest.NewServer(newHandler(d, tk))
	e.t.Cleanup(func() { e.srv.Close(); d.sql.Close() })
}

func (e *sealedEnv) challenge(groupID []byte) *sealedsender.AuthChallenge {
	resp, err := http.Post(e.srv.URL+"/v1/groups/"+hex.EncodeToString(groupID)+"/envelopes", "application/octet-stream", nil)
	require.NoError(e.t, err)
	resp.Body.Close()
	require.Equal(e.t, http.StatusUnauthorized, resp.StatusCode)
	chs, err := sealedsender.ParseWWWAuthenticate(resp.Header.Get("WWW-Authenticate"))
	require.NoError(e.t, err)
	require.Equal(e.t, sealedsender.GroupRedemptionContext(groupID), chs[0].Challenge.RedemptionContext)
	return chs[0]
}

// token fetches one token bound to groupID as account.
func (e *sealedEnv) token(account string, groupID []byte) []byte {
	pending, req, err := e.pp.Request(e.pp.Challenge().ForGroup(groupID))
	require.NoError(e.t, err)
	status, resp, _ := e.issue(account, req)
	require.Equal(e.t, http.StatusOK, status, "%s", resp)
	tok, err := pending.Finalize(resp)
	require.NoError(e.t, err)
	return tok
}

func (e *sealedEnv) issue(account string, tokenRequest []byte) (int, []byte, http.Header) {
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+tokenRequestPath, bytes.NewReader(tokenRequest))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/private-token-request")
	if account != "" {
		req.Header.Set(accountHeader, account)
	}
	return e.do(req)
}

func (e *sealedEnv) do(req *http.Request) (int, []byte, http.Header) {
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, body, resp.Header
}

// post sends body to the group's envelope (or messages) endpoint and
// returns the status and the seq of a success.
func (e *sealedEnv) post(groupID []byte, endpoint string, body []byte) (int, int64, string) {
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/groups/"+hex.EncodeToString(groupID)+"/"+endpoint, bytes.NewReader(body))
	require.NoError(e.t, err)
	status, resp, h := e.do(req)
	if status != http.StatusOK {
		if status == http.StatusUnauthorized {
			_, err := sealedsender.ParseWWWAuthenticate(h.Get("WWW-Authenticate"))
			require.NoError(e.t, err, "a 401 carries a PrivateToken challenge")
		}
		return status, 0, string(resp)
	}
	var out struct {
		Seq int64 `json:"seq"`
	}
	require.NoError(e.t, json.Unmarshal(resp, &out))
	return status, out.Seq, ""
}

func (e *sealedEnv) log(groupID []byte) [][]byte {
	status, body, _ := e.do(must(http.NewRequest(http.MethodGet, e.srv.URL+"/v1/groups/"+hex.EncodeToString(groupID)+"/messages", nil)))
	require.Equal(e.t, http.StatusOK, status)
	var entries []logEntry
	require.NoError(e.t, json.Unmarshal(body, &entries))
	var out [][]byte
	for _, le := range entries {
		out = append(out, le.Data)
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// testGroup is a one-member group whose messages are PrivateMessages.
func testGroup(t *testing.T, id string) *mls.Group {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	g, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}, sig,
		&mls.GroupOptions{GroupID: []byte(id)}, &mls.Config{Handshake: mls.HandshakePrivate})
	require.NoError(t, err)
	return g
}

func encrypt(t *testing.T, g *mls.Group, text string) *mls.MLSMessage {
	m, err := g.EncryptApplication([]byte(text), nil)
	require.NoError(t, err)
	return m
}

func seal(t *testing.T, token []byte, m *mls.MLSMessage) []byte {
	env, err := sealedsender.SealMessage(sealedsender.SchemePrivacyPass, token, m, nil)
	require.NoError(t, err)
	return env
}

// postgresSchema returns a DSN of the PostgreSQL server named by
// E2EE_POSTGRES_DSN (.ci/run starts one) for a schema of the test's own,
// or skips the test.
func postgresSchema(t *testing.T) string {
	dsn := os.Getenv("E2EE_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("E2EE_POSTGRES_DSN is not set: no PostgreSQL server to test against (.ci/run starts one)")
	}
	db, err := sql.Open("postgres", dsn)
	require.NoError(t, err)
	defer db.Close()
	schema := fmt.Sprintf("server_test_%d", time.Now().UnixNano())
	_, err = db.Exec(`CREATE SCHEMA ` + schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		if db, err := sql.Open("postgres", dsn); err == nil {
			db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
			db.Close()
		}
	})
	return dsn + " search_path=" + schema
}

// TestSealedEnvelopes checks the sealed-envelope endpoint: a token pays
// for one message of its group, the same envelope sent again is the same
// message (not a double spend), a token lifted onto another message or
// group is refused, PrivateMessages are not accepted unsealed, the log
// holds the bare message, and spent tokens survive a restart.
func TestSealedEnvelopes(t *testing.T) { testSealedEnvelopes(t, false) }

// TestSealedEnvelopesPostgres is TestSealedEnvelopes on PostgreSQL.
func TestSealedEnvelopesPostgres(t *testing.T) { testSealedEnvelopes(t, true) }

func testSealedEnvelopes(t *testing.T, postgres bool) {
	e := newSealedEnv(t, postgres)
	ga, gb := testGroup(t, "group-a"), testGroup(t, "group-b")
	idA, idB := ga.GroupID(), gb.GroupID()

	m1 := encrypt(t, ga, "one")
	tok1 := e.token("alice", idA)
	env1 := seal(t, tok1, m1)
	status, seq1, msg := e.post(idA, "envelopes", env1)
	require.Equal(t, http.StatusOK, status, msg)

	// The log holds the MLS message alone: no token, no envelope, no sender.
	m1b, _ := m1.Bytes()
	require.Equal(t, [][]byte{m1b}, e.log(idA))

	// The same envelope again (a client re-sending after a crash) is the
	// same message: same place, nothing spent, nothing logged twice.
	status, seq, msg := e.post(idA, "envelopes", env1)
	require.Equal(t, http.StatusOK, status, msg)
	require.Equal(t, seq1, seq)
	require.Len(t, e.log(idA), 1)

	// The token lifted onto another message of the group: refused as spent.
	m2 := encrypt(t, ga, "two")
	status, _, msg = e.post(idA, "envelopes", seal(t, tok1, m2))
	require.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, msg, sealedsender.ErrDoubleSpend.Error())

	// A token of group A in an envelope for group B: refused unspent, and
	// still good for group A.
	tok2 := e.token("alice", idA)
	status, _, msg = e.post(idB, "envelopes", seal(t, tok2, encrypt(t, gb, "lifted")))
	require.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, msg, sealedsender.ErrInvalidToken.Error())
	env2 := seal(t, tok2, m2)
	status, seq2, msg := e.post(idA, "envelopes", env2)
	require.Equal(t, http.StatusOK, status, msg)
	require.Greater(t, seq2, seq1)

	// A PrivateMessage sent unsealed is refused with a challenge.
	m3 := encrypt(t, ga, "three")
	m3b, _ := m3.Bytes()
	status, _, _ = e.post(idA, "messages", m3b)
	require.Equal(t, http.StatusUnauthorized, status)
	// A forged token is refused.
	forged := append([]byte{}, tok2...)
	forged[len(forged)-1] ^= 1
	status, _, msg = e.post(idA, "envelopes", seal(t, forged, m3))
	require.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, msg, sealedsender.ErrInvalidToken.Error())

	// The server spent the token and crashed before logging the message:
	// the same envelope is accepted again, for that message only.
	tok3 := e.token("alice", idA)
	env3 := seal(t, tok3, m3)
	status, _, msg = e.post(idA, "envelopes", env3)
	require.Equal(t, http.StatusOK, status, msg)
	_, err := e.d.sql.Exec(e.d.q(`DELETE FROM ds_messages WHERE data = ?`), m3b)
	require.NoError(t, err)
	require.Len(t, e.log(idA), 2)
	m4 := encrypt(t, ga, "four")
	status, _, _ = e.post(idA, "envelopes", seal(t, tok3, m4))
	require.Equal(t, http.StatusUnauthorized, status, "the token pays for m3 only")
	status, _, msg = e.post(idA, "envelopes", env3)
	require.Equal(t, http.StatusOK, status, msg)
	require.Len(t, e.log(idA), 3)

	// A restart keeps spent tokens spent (they are in the database) and
	// keeps the keys (the master secret is too): fresh tokens still work.
	tok4 := e.token("alice", idA)
	e.start()
	status, _, msg = e.post(idA, "envelopes", seal(t, tok1, m4))
	require.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, msg, sealedsender.ErrDoubleSpend.Error())
	status, _, msg = e.post(idA, "envelopes", seal(t, tok4, m4))
	require.Equal(t, http.StatusOK, status, msg)
}

// TestSealedCommits checks that sealed commits follow the rule of the
// plain endpoint: one per epoch, the first; the same envelope again gets
// the same answer.
func TestSealedCommits(t *testing.T) { testSealedCommits(t, false) }

// TestSealedCommitsPostgres is TestSealedCommits on PostgreSQL.
func TestSealedCommitsPostgres(t *testing.T) { testSealedCommits(t, true) }

func testSealedCommits(t *testing.T, postgres bool) {
	e := newSealedEnv(t, postgres)
	g := testGroup(t, "group-c")
	id := g.GroupID()
	pc1, err := g.Commit(&mls.CommitOptions{ForcePath: true})
	require.NoError(t, err)
	pc2, err := g.Commit(&mls.CommitOptions{ForcePath: true})
	require.NoError(t, err)
	env1 := seal(t, e.token("alice", id), pc1.Commit)
	status, seq1, msg := e.post(id, "envelopes", env1)
	require.Equal(t, http.StatusOK, status, msg)
	status, _, _ = e.post(id, "envelopes", seal(t, e.token("alice", id), pc2.Commit))
	require.Equal(t, http.StatusConflict, status, "a second commit of the epoch")
	status, seq, msg := e.post(id, "envelopes", env1)
	require.Equal(t, http.StatusOK, status, msg)
	require.Equal(t, seq1, seq)
	status, body, _ := e.do(must(http.NewRequest(http.MethodGet, e.srv.URL+"/v1/groups/"+hex.EncodeToString(id)+"/commits/0", nil)))
	require.Equal(t, http.StatusOK, status)
	var le logEntry
	require.NoError(t, json.Unmarshal(body, &le))
	require.True(t, pc1.Is(must(mls.ParseMessage(le.Data))))
}

// TestTokenIssuance checks the issuance endpoint: a logged-in account
// only, RFC 9578 requests, and refusals that name the problem.
func TestTokenIssuance(t *testing.T) {
	e := newSealedEnv(t, false)
	_, req, err := e.pp.Request(e.pp.Challenge().ForGroup([]byte("g")))
	require.NoError(t, err)
	status, _, _ := e.issue("", req)
	require.Equal(t, http.StatusUnauthorized, status, "no account")
	status, body, _ := e.issue("bob", req[:len(req)-1])
	require.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, string(body), sealedsender.ErrMalformed.Error())
	status, body, h := e.issue("bob", req)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, "application/private-token-response", h.Get("Content-Type"))
}

// TestVerifyRateLimit checks the rate-limit hook: past the per-group
// limit, a valid token is refused with 429, unverified and unspent, and
// goes through once the window has passed. Tokens that fail the cheap
// checks leave nothing in the database.
func TestVerifyRateLimit(t *testing.T) {
	e := newSealedEnv(t, false)
	g := testGroup(t, "group-r")
	id := g.GroupID()
	now := time.Now()
	e.tk.limiter.perGroup = 1
	e.tk.limiter.now = func() time.Time { return now }

	status, _, msg := e.post(id, "envelopes", seal(t, e.token("alice", id), encrypt(t, g, "one")))
	require.Equal(t, http.StatusOK, status, msg)
	env := seal(t, e.token("alice", id), encrypt(t, g, "two"))
	status, _, msg = e.post(id, "envelopes", env)
	require.Equal(t, http.StatusTooManyRequests, status)
	assert.Contains(t, msg, sealedsender.ErrRateLimited.Error())
	now = now.Add(time.Minute)
	status, _, msg = e.post(id, "envelopes", env)
	require.Equal(t, http.StatusOK, status, msg)

	// A token for another group, and a truncated one: refused before any
	// write.
	var before, after int
	require.NoError(t, e.d.sql.QueryRow(`SELECT COUNT(*) FROM ds_token_uses`).Scan(&before))
	status, _, _ = e.post(id, "envelopes", seal(t, e.token("alice", []byte("elsewhere")), encrypt(t, g, "three")))
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = e.post(id, "envelopes", seal(t, []byte{0, 1, 2}, encrypt(t, g, "four")))
	require.Equal(t, http.StatusBadRequest, status)
	require.NoError(t, e.d.sql.QueryRow(`SELECT COUNT(*) FROM ds_token_uses`).Scan(&after))
	require.Equal(t, before, after)
}
