package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microchat/e2ee/examples/store"
	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeIssuer serves an issuer directory and group challenges, honestly or
// not, as a hostile server might.
type fakeIssuer struct {
	mu sync.Mutex
	// dir and challenge produce the directory and the group challenge.
	dir       func() *sealedsender.KeyDirectory
	challenge func(groupID []byte) *sealedsender.AuthChallenge
}

func newIssuer(t *testing.T, name string) *sealedsender.PrivacyPassIssuer {
	t.Helper()
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	return newIssuerWithMaster(t, name, master)
}

// newIssuerWithMaster returns an issuer whose keys are those of every
// issuer with the same master secret.
func newIssuerWithMaster(t *testing.T, name string, master []byte) *sealedsender.PrivacyPassIssuer {
	t.Helper()
	st := sealedsender.NewMemoryStore() // a test: nothing to keep
	iss, err := sealedsender.NewPrivacyPassIssuer(master, &sealedsender.TokenChallenge{
		TokenType: sealedsender.TokenTypeVOPRFP384, IssuerName: name,
	}, &sealedsender.IssuerConfig{Period: tokenPeriod, Spent: st, Quotas: st, IssuerRequestURI: "/v1/token-request"})
	require.NoError(t, err)
	return iss
}

// honestly makes f serve iss as it is.
func (f *fakeIssuer) honestly(t *testing.T, iss *sealedsender.PrivacyPassIssuer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dir = func() *sealedsender.KeyDirectory {
		d, err := iss.Keys()
		require.NoError(t, err)
		return d
	}
	f.challenge = func(groupID []byte) *sealedsender.AuthChallenge {
		ch, err := iss.AuthChallenge(groupID, 60)
		require.NoError(t, err)
		return ch
	}
}

func (f *fakeIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/.well-known/private-token-issuer-directory":
		b, _ := f.dir().Bytes()
		w.Write(b)
	case strings.HasSuffix(r.URL.Path, "/envelopes"):
		gid, err := hex.DecodeString(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/groups/"), "/envelopes"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("WWW-Authenticate", f.challenge(gid).String())
		w.WriteHeader(http.StatusUnauthorized)
	default:
		http.NotFound(w, r)
	}
}

func testClient(url string) (*client, *bytes.Buffer) {
	var out bytes.Buffer
	return &client{name: "tester", ds: newDSClient(url), out: &lockedWriter{w: &out}, groups: map[string]*member{}}, &out
}

// TestIssuerChecks checks that a client refuses what a server could use to
// recognize its tokens: a challenge not bound to the group, a challenge
// other than the one it was given before, a challenge naming another key
// than the directory, and keys for periods it does not expect.
func TestIssuerChecks(t *testing.T) {
	ctx := context.Background()
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	iss := newIssuerWithMaster(t, "issuer.example", master)
	f := &fakeIssuer{}
	f.honestly(t, iss)
	srv := httptest.NewServer(f)
	defer srv.Close()

	c, _ := testClient(srv.URL)
	pp, err := c.issuer(ctx)
	require.NoError(t, err)
	want, err := iss.Keys()
	require.NoError(t, err)
	require.Equal(t, want.Keys[1].PublicKey, pp.Key().PublicKey, "the current period's key")

	// Each check runs when the client next fetches the issuer's keys (the
	// next period, simulated by forgetting the current client).
	next := func() { c.wallet.pp = nil }

	// A challenge bound to another group (or to this client alone).
	next()
	f.mu.Lock()
	f.challenge = func([]byte) *sealedsender.AuthChallenge {
		ch, err := iss.AuthChallenge([]byte("another group"), 60)
		require.NoError(t, err)
		return ch
	}
	f.mu.Unlock()
	_, err = c.issuer(ctx)
	require.ErrorIs(t, err, sealedsender.ErrUnexpectedKey)

	// A challenge other than the pinned one, with the same keys.
	other := newIssuerWithMaster(t, "other.example", master)
	f.honestly(t, other)
	next()
	_, err = c.issuer(ctx)
	require.ErrorIs(t, err, sealedsender.ErrKeyMismatch)

	// A challenge naming a key of its own, the directory the common one.
	same := newIssuer(t, "issuer.example")
	f.honestly(t, iss)
	f.mu.Lock()
	f.challenge = func(groupID []byte) *sealedsender.AuthChallenge {
		ch, err := same.AuthChallenge(groupID, 60)
		require.NoError(t, err)
		return ch
	}
	f.mu.Unlock()
	next()
	_, err = c.issuer(ctx)
	require.ErrorIs(t, err, sealedsender.ErrKeyMismatch)

	// A directory with a key for a period far ahead, for a fresh client.
	f.honestly(t, iss)
	f.mu.Lock()
	f.dir = func() *sealedsender.KeyDirectory {
		d, err := iss.Keys()
		require.NoError(t, err)
		d.Keys[0].NotBefore += int64(10 * tokenPeriod / time.Second)
		return d
	}
	f.mu.Unlock()
	fresh, _ := testClient(srv.URL)
	_, err = fresh.issuer(ctx)
	require.ErrorIs(t, err, sealedsender.ErrUnexpectedKey)
}

// TestViewMismatch checks the comparison through the group: a member whose
// view of the issuer differs is detected by a receiver, which warns and
// stops fetching tokens; the same view passes.
func TestViewMismatch(t *testing.T) {
	ctx := context.Background()
	gid := []byte("g")
	common, own := &fakeIssuer{}, &fakeIssuer{}
	iss := newIssuer(t, "issuer.example")
	common.honestly(t, iss)
	// The same issuer name and challenge, but a key for one client alone.
	own.honestly(t, newIssuer(t, "issuer.example"))
	srvCommon, srvOwn := httptest.NewServer(common), httptest.NewServer(own)
	defer srvCommon.Close()
	defer srvOwn.Close()

	alice, _ := testClient(srvCommon.URL)
	bob, bobOut := testClient(srvCommon.URL)
	tagged, _ := testClient(srvOwn.URL)
	for _, c := range []*client{alice, bob, tagged} {
		_, err := c.issuer(ctx)
		require.NoError(t, err)
	}
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	g, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}, sig, &mls.GroupOptions{GroupID: gid}, nil)
	require.NoError(t, err)
	m := newMember("g", g)
	received := func(from *client) *mls.Processed {
		return &mls.Processed{Epoch: g.Epoch(), AuthenticatedData: from.viewTag(m)}
	}

	bob.checkView(m, received(alice))
	require.NoError(t, bob.wallet.mismatch)
	require.Empty(t, bobOut.String())

	bob.checkView(m, received(tagged))
	require.ErrorIs(t, bob.wallet.mismatch, sealedsender.ErrKeyMismatch)
	require.Contains(t, bobOut.String(), "WARNING")
	_, err = bob.issuer(ctx)
	require.ErrorIs(t, err, sealedsender.ErrKeyMismatch, "no more tokens with this view")
}

// TestResealRefusedToken checks that an envelope whose token the server
// refuses (expired while it waited in the outbox) is sealed again with
// another token of the stock, around the same message, and saved in place
// of the first before it is sent.
func TestResealRefusedToken(t *testing.T) {
	ctx := context.Background()
	tok1, tok2 := bytes.Repeat([]byte{1}, 40), bytes.Repeat([]byte{2}, 40)
	var got [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e, err := sealedsender.ParseEnvelope(body)
		if !assert.NoError(t, err) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = append(got, e.Message)
		if bytes.Equal(e.Token, tok1) {
			http.Error(w, "expired", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"seq": 7}`))
	}))
	defer srv.Close()

	c, out := testClient(srv.URL)
	db, err := store.OpenSQLite(filepath.Join(t.TempDir(), "c.db"))
	require.NoError(t, err)
	defer db.Close()
	c.store, err = store.New(ctx, db, store.SQLite)
	require.NoError(t, err)
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	g, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}, sig,
		&mls.GroupOptions{GroupID: []byte("g")}, &mls.Config{Handshake: mls.HandshakePrivate})
	require.NoError(t, err)
	m := newMember("g", g)
	now := periodOf(time.Now()) * int64(tokenPeriod/time.Second)
	m.tokens["token/2"] = storedToken{key: "token/2", notBefore: now, token: tok2}
	require.NoError(t, c.save(ctx, m, nil, tokenRecord(m.tokens["token/2"])))

	msg, err := g.EncryptApplication([]byte("hello"), nil)
	require.NoError(t, err)
	env, err := sealedsender.SealMessage(sealedsender.SchemePrivacyPass, tok1, msg, nil)
	require.NoError(t, err)
	require.NoError(t, c.save(ctx, m, nil, mls.Record{Key: []byte("outbox-sealed"), Value: env}))

	seq, err := c.sendEnvelope(ctx, m, env, "outbox-sealed")
	require.NoError(t, err)
	require.Equal(t, int64(7), seq)
	require.Len(t, got, 2)
	require.Equal(t, got[0], got[1], "the same message, not encrypted again")
	require.Empty(t, m.tokens)
	require.Contains(t, out.String(), "refused a token")
	recs, err := mls.LoadAppRecords(ctx, c.store, []byte("g"))
	require.NoError(t, err)
	var saved []byte
	for _, r := range recs {
		require.NotEqual(t, "token/2", string(r.Key), "the token left the stored stock")
		if string(r.Key) == "outbox-sealed" {
			saved = r.Value
		}
	}
	e, err := sealedsender.ParseEnvelope(saved)
	require.NoError(t, err)
	require.Equal(t, tok2, e.Token, "the new envelope replaced the first in the outbox")

	// With no token left, the refusal is reported as such.
	_, err = c.sendEnvelope(ctx, m, env, "outbox-sealed")
	require.ErrorIs(t, err, errNoTokens)
}
