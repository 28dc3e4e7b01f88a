package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/microchat/e2ee/examples/store"
	"github.com/microchat/e2ee/mls"
)

// suite is the cipher suite of every group this client creates.
const suite = mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

// client is one device: its identity and signature key, its database, and
// the groups it is a member of. Its methods are safe for concurrent use
// (one lock: the command loop and the poller take turns).
type client struct {
	mu     sync.Mutex
	name   string
	cred   mls.Credential
	sig    *mls.SignaturePrivateKey
	db     *sql.DB
	store  *store.Store
	cfg    *mls.Config
	ds     *dsClient
	out    *lockedWriter
	groups map[string]*member
	wallet wallet
}

// member is the client's state in one group.
//
// Besides the group's own records, the client keeps application records
// in the same store, written in the same atomic saves (mls.SaveOptions.App):
// "cursor" (the last log entry processed), "own/SEQ" (log entries this
// client sent, to skip when they come back), "outbox-sealed" (the sealed
// envelope of an encrypted message, saved before it is sent; "outbox" for
// an unsealed one), "commit-envelope" (the sealed envelope of the stored
// pending commit), "welcome" (the Welcome of a merged commit, until it is
// delivered) and "token/ID" (the group's stock of tokens, tokens.go).
type member struct {
	name   string
	g      *mls.Group
	cursor int64                  // last log entry processed
	own    map[int64]bool         // log entries this client sent
	tokens map[string]storedToken // unused tokens bound to the group, by record key
}

func newMember(name string, g *mls.Group) *member {
	return &member{name: name, g: g, own: map[int64]bool{}, tokens: map[string]storedToken{}}
}

func cursorRecord(seq int64) mls.Record {
	return mls.Record{Key: []byte("cursor"), Value: binary.BigEndian.AppendUint64(nil, uint64(seq))}
}

func ownRecord(seq int64, sent bool) mls.Record {
	r := mls.Record{Key: fmt.Appendf(nil, "own/%d", seq)}
	if sent {
		r.Value = []byte{1}
	}
	return r
}

func openClient(ctx context.Context, serverURL, name, dbPath string, out *lockedWriter) (*client, error) {
	db, err := store.OpenSQLite(dbPath)
	if err != nil {
		return nil, err
	}
	st, err := store.New(ctx, db, store.SQLite)
	if err != nil {
		db.Close()
		return nil, err
	}
	c := &client{
		name:   name,
		cred:   mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)},
		db:     db,
		store:  st,
		cfg:    &mls.Config{Handshake: mls.HandshakePrivate, PaddingBlock: 32},
		ds:     newDSClient(serverURL),
		out:    out,
		groups: map[string]*member{},
	}
	if err := c.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

func (c *client) close() { c.db.Close() }

// load reads the client's identity and groups from its database, creating
// a signature key and publishing KeyPackages on first start.
func (c *client) load(ctx context.Context) error {
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS client_identity (name TEXT PRIMARY KEY, sig BLOB NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS client_groups (name TEXT PRIMARY KEY)`,
	} {
		if _, err := c.db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	var sigBytes []byte
	err := c.db.QueryRowContext(ctx, `SELECT sig FROM client_identity WHERE name = ?`, c.name).Scan(&sigBytes)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		sig, err := suite.GenerateSignatureKey()
		if err != nil {
			return err
		}
		if _, err := c.db.ExecContext(ctx, `INSERT INTO client_identity (name, sig) VALUES (?, ?)`, c.name, sig.Bytes()); err != nil {
			return err
		}
		c.sig = sig
		// A few one-time KeyPackages and a last-resort one (RFC 9420, §16.8).
		for i := range 4 {
			if err := c.publishKeyPackage(ctx, i == 3); err != nil {
				return fmt.Errorf("publishing KeyPackages: %w", err)
			}
		}
	case err != nil:
		return err
	default:
		if c.sig, err = suite.NewSignaturePrivateKey(sigBytes); err != nil {
			return err
		}
	}

	rows, err := c.db.QueryContext(ctx, `SELECT name FROM client_groups`)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	for _, name := range names {
		if err := c.open(ctx, name); err != nil {
			return fmt.Errorf("opening group %s: %w", name, err)
		}
	}
	return nil
}

// open loads one group from the store and finishes what a crash may have
// interrupted, as the persistence protocol of package mls says: a message
// saved to the outbox is sent (again: the server takes the same bytes
// once), a stored commit is merged if the server accepted it, dropped if
// it accepted another, and sent again if it accepted none, and a Welcome
// not known to be delivered is delivered.
func (c *client) open(ctx context.Context, name string) error {
	g, err := mls.OpenGroup(ctx, c.store, []byte(name), c.cfg)
	if errors.Is(err, mls.ErrNotFound) {
		return nil // left the group
	}
	if err != nil {
		return err
	}
	recs, err := mls.LoadAppRecords(ctx, c.store, []byte(name))
	if err != nil {
		return err
	}
	m := newMember(name, g)
	var outbox, sealedOutbox, commitEnvelope, welcome []byte
	for _, r := range recs {
		k := string(r.Key)
		switch {
		case k == "cursor" && len(r.Value) == 8:
			m.cursor = int64(binary.BigEndian.Uint64(r.Value))
		case k == "outbox":
			outbox = r.Value
		case k == "outbox-sealed":
			sealedOutbox = r.Value
		case k == "commit-envelope":
			commitEnvelope = r.Value
		case k == "welcome":
			welcome = r.Value
		case strings.HasPrefix(k, tokenRecordPrefix):
			if t, ok := parseTokenRecord(r); ok {
				m.tokens[k] = t
			}
		case strings.HasPrefix(k, "own/"):
			if seq, err := strconv.ParseInt(k[4:], 10, 64); err == nil {
				m.own[seq] = true
			}
		}
	}
	c.groups[name] = m
	if outbox != nil {
		msg, err := mls.ParseMessage(outbox)
		if err != nil {
			return err
		}
		seq, err := c.ds.send(ctx, g.GroupID(), msg)
		if err != nil {
			return fmt.Errorf("re-sending the outbox: %w", err)
		}
		m.own[seq] = true
		if err := c.save(ctx, m, nil, ownRecord(seq, true), mls.Record{Key: []byte("outbox")}); err != nil {
			return err
		}
	}
	if sealedOutbox != nil {
		// The same envelope, token included: the server answers it as the
		// message it already logged, or logs it now.
		seq, err := c.sendEnvelope(ctx, m, sealedOutbox, "outbox-sealed")
		switch {
		case errors.Is(err, errNoTokens):
			// Its token expired while the client was offline, and the
			// stock has no other: keep it for the next start rather than
			// fetch a token just before sending it.
			c.out.printf("[%s] warning: an unsent message waits for a token until the next start", name)
		case err != nil:
			return fmt.Errorf("re-sending the outbox: %w", err)
		default:
			m.own[seq] = true
			if err := c.save(ctx, m, nil, ownRecord(seq, true), mls.Record{Key: []byte("outbox-sealed")}); err != nil {
				return err
			}
		}
	}
	if pc := g.RecoveredCommit(); pc != nil {
		if err := c.finishCommit(ctx, m, pc, commitEnvelope); err != nil && !errors.Is(err, mls.ErrConflict) {
			return err
		}
	}
	if welcome != nil {
		if err := c.deliverWelcome(ctx, m, welcome); err != nil {
			return err
		}
	}
	return nil
}

func (c *client) publishKeyPackage(ctx context.Context, lastResort bool) error {
	kp, err := mls.GenerateKeyPackage(suite, c.cred, c.sig, &mls.KeyPackageOptions{LastResort: lastResort})
	if err != nil {
		return err
	}
	if err := c.store.PutKeyPackage(ctx, kp); err != nil {
		return err
	}
	return c.ds.post(ctx, "/v1/keypackages", &mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp.KeyPackage}, nil)
}

// save persists what changed in m's group with the cursor and the
// records extra, in one atomic step; consumed lists what the step used up
// (a KeyPackage on join).
func (c *client) save(ctx context.Context, m *member, consumed *mls.Consumed, extra ...mls.Record) error {
	app := append([]mls.Record{cursorRecord(m.cursor)}, extra...)
	return mls.SaveGroup(ctx, c.store, m.g, &mls.SaveOptions{Consumed: consumed, App: app})
}

func (c *client) group(name string) (*member, error) {
	m := c.groups[name]
	if m == nil {
		return nil, fmt.Errorf("not a member of %q", name)
	}
	return m, nil
}

func (c *client) create(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups[name] != nil {
		return fmt.Errorf("already a member of %q", name)
	}
	g, err := mls.NewGroup(suite, c.cred, c.sig, &mls.GroupOptions{GroupID: []byte(name)}, c.cfg)
	if err != nil {
		return err
	}
	m := newMember(name, g)
	if err := c.register(ctx, m, nil); err != nil {
		return err
	}
	if err := c.publishGroupInfo(ctx, m); err != nil {
		return err
	}
	// Tokens for the group's first messages, fetched now rather than when
	// they are sent. Only the creator can send in epoch 0 anyway.
	if err := c.refill(ctx, m); err != nil {
		c.out.printf("[%s] warning: fetching tokens: %v", name, err)
	}
	return nil
}

func (c *client) publishGroupInfo(ctx context.Context, m *member) error {
	gi, err := m.g.GroupInfo(&mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		return err
	}
	return c.ds.put(ctx, "/v1/groups/"+hex.EncodeToString(m.g.GroupID())+"/groupinfo", gi)
}

// register saves a group the client just created or joined and lists it
// in the client's groups.
func (c *client) register(ctx context.Context, m *member, consumed *mls.Consumed) error {
	if err := c.save(ctx, m, consumed); err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, `INSERT INTO client_groups (name) VALUES (?) ON CONFLICT DO NOTHING`, m.name); err != nil {
		return err
	}
	c.groups[m.name] = m
	return nil
}

// commit catches up with the group, then creates a commit, stores it
// (mls.SavePendingCommit) and sends it. The server accepts one commit per
// epoch (RFC 9420, §14): if it accepts this one, the client merges it; if
// another came first, the client drops its own and processes that one.
func (c *client) commit(ctx context.Context, name string, opts *mls.CommitOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.group(name)
	if err != nil {
		return err
	}
	if err := c.syncGroup(ctx, m); err != nil {
		return err
	}
	if _, _, err := m.takeToken(); err != nil {
		return err
	}
	opts.GroupInfo, opts.ExternalPub = true, true
	opts.AuthenticatedData = c.viewTag(m)
	pc, err := m.g.Commit(opts)
	if err != nil {
		return err
	}
	// The commit's envelope is stored with it, taking its token from the
	// stock in the same save: after a crash the same envelope is sent.
	env, tok, recs, err := m.seal(pc.Commit)
	if err != nil {
		return err
	}
	recs = append(recs, cursorRecord(m.cursor), mls.Record{Key: []byte("commit-envelope"), Value: env})
	if err := mls.SavePendingCommit(ctx, c.store, m.g, pc, &mls.SaveOptions{App: recs}); err != nil {
		return err
	}
	delete(m.tokens, tok.key)
	return c.sendCommit(ctx, m, pc, env)
}

// sendCommit sends a stored pending commit, in its sealed envelope env,
// and finishes it as the server decides.
func (c *client) sendCommit(ctx context.Context, m *member, pc *mls.PendingCommit, env []byte) error {
	var seq int64
	var err error
	if env != nil {
		seq, err = c.sendEnvelope(ctx, m, env, "commit-envelope")
	} else {
		seq, err = c.ds.send(ctx, m.g.GroupID(), pc.Commit)
	}
	if errors.Is(err, mls.ErrConflict) {
		if err := c.save(ctx, m, nil, mls.Record{Key: []byte("commit-envelope")}); err != nil { // drops the stored commit
			return err
		}
		if err := c.syncGroup(ctx, m); err != nil {
			return err
		}
		return err
	}
	if err != nil {
		return err
	}
	return c.merged(ctx, m, pc, seq)
}

// finishCommit resolves a commit recovered after a restart; env is its
// stored sealed envelope.
func (c *client) finishCommit(ctx context.Context, m *member, pc *mls.PendingCommit, env []byte) error {
	data, err := c.ds.get(ctx, "/v1/groups/"+hex.EncodeToString(m.g.GroupID())+"/commits/"+strconv.FormatUint(m.g.Epoch(), 10))
	if errors.Is(err, errNotFound) {
		if env == nil && pc.Commit.WireFormat == mls.WireFormatPrivateMessage {
			return errors.New("stored commit without its sealed envelope")
		}
		return c.sendCommit(ctx, m, pc, env) // the server never got it: the same envelope again
	}
	if err != nil {
		return err
	}
	var e struct {
		Seq  int64  `json:"seq"`
		Data []byte `json:"data"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return err
	}
	msg, err := mls.ParseMessage(e.Data)
	if err != nil {
		return err
	}
	if pc.Is(msg) {
		c.out.printf("[%s] recovered our commit of epoch %d", m.name, m.g.Epoch())
		return c.merged(ctx, m, pc, e.Seq)
	}
	c.out.printf("[%s] dropped our commit of epoch %d: another one was accepted", m.name, m.g.Epoch())
	return mls.SaveGroup(ctx, c.store, m.g, &mls.SaveOptions{DiscardPendingCommit: true,
		App: []mls.Record{cursorRecord(m.cursor), {Key: []byte("commit-envelope")}}})
}

// merged merges a commit the server accepted at seq, saves the new epoch
// with the Welcome to deliver, then delivers it and publishes the new
// GroupInfo.
func (c *client) merged(ctx context.Context, m *member, pc *mls.PendingCommit, seq int64) error {
	if err := m.g.MergePendingCommit(pc); err != nil {
		return err
	}
	m.own[seq] = true
	var welcome []byte
	if pc.Welcome != nil {
		var err error
		if welcome, err = pc.Welcome.Bytes(); err != nil {
			return err
		}
	}
	if err := c.save(ctx, m, nil, ownRecord(seq, true), mls.Record{Key: []byte("welcome"), Value: welcome},
		mls.Record{Key: []byte("commit-envelope")}); err != nil {
		return err
	}
	c.out.printf("[%s] epoch %d, %d members", m.name, m.g.Epoch(), m.g.MemberCount())
	if welcome != nil {
		if err := c.deliverWelcome(ctx, m, welcome); err != nil {
			return err
		}
	}
	if pc.GroupInfo != nil {
		return c.ds.put(ctx, "/v1/groups/"+hex.EncodeToString(m.g.GroupID())+"/groupinfo", pc.GroupInfo)
	}
	return c.publishGroupInfo(ctx, m)
}

func (c *client) deliverWelcome(ctx context.Context, m *member, welcome []byte) error {
	msg, err := mls.ParseMessage(welcome)
	if err != nil {
		return err
	}
	if err := c.ds.post(ctx, "/v1/welcomes", msg, nil); err != nil {
		return err
	}
	return c.save(ctx, m, nil, mls.Record{Key: []byte("welcome")})
}

func (c *client) add(ctx context.Context, name, who string) error {
	var kpMsg mls.MLSMessage
	data, err := c.ds.get(ctx, "/v1/keypackages/"+hex.EncodeToString([]byte(who)))
	if err != nil {
		return fmt.Errorf("fetching a KeyPackage of %s: %w", who, err)
	}
	m, err := mls.ParseMessage(data)
	if err != nil {
		return err
	}
	if m.KeyPackage == nil {
		return errors.New("the server sent something else than a KeyPackage")
	}
	kpMsg = *m
	if !bytes.Equal(kpMsg.KeyPackage.LeafNode.Credential.Identity, []byte(who)) {
		return fmt.Errorf("the server sent a KeyPackage of someone else")
	}
	return c.commit(ctx, name, &mls.CommitOptions{Add: []*mls.KeyPackage{kpMsg.KeyPackage}})
}

func (c *client) remove(ctx context.Context, name, who string) error {
	c.mu.Lock()
	m, err := c.group(name)
	var leaves []mls.LeafIndex
	if err == nil {
		for _, mb := range m.g.Members() {
			if string(mb.Credential.Identity) == who {
				leaves = append(leaves, mb.Index)
			}
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if len(leaves) == 0 {
		return fmt.Errorf("%s is not in %s", who, name)
	}
	return c.commit(ctx, name, &mls.CommitOptions{Remove: leaves})
}

func (c *client) update(ctx context.Context, name string) error {
	return c.commit(ctx, name, &mls.CommitOptions{ForcePath: true})
}

// joinExternal joins a group by external commit from its published
// GroupInfo (RFC 9420, §12.4.3.2).
func (c *client) joinExternal(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups[name] != nil {
		return fmt.Errorf("already a member of %q", name)
	}
	data, err := c.ds.get(ctx, "/v1/groups/"+hex.EncodeToString([]byte(name))+"/groupinfo")
	if err != nil {
		return err
	}
	gi, err := mls.ParseMessage(data)
	if err != nil {
		return err
	}
	g, commit, err := mls.JoinExternal(gi, c.cred, c.sig, nil, c.cfg)
	if err != nil {
		return err
	}
	// Until the server accepts the external commit there is nothing to
	// keep: a crash before that loses only the attempt.
	seq, err := c.ds.send(ctx, g.GroupID(), commit)
	if err != nil {
		return err
	}
	// Start reading after the join: earlier messages are not for us.
	m := newMember(name, g)
	m.cursor = seq
	if err := c.register(ctx, m, nil); err != nil {
		return err
	}
	c.out.printf("[%s] joined, epoch %d, %d members", name, g.Epoch(), g.MemberCount())
	if err := c.publishGroupInfo(ctx, m); err != nil {
		return err
	}
	if err := c.refill(ctx, m); err != nil { // ahead of need
		c.out.printf("[%s] warning: fetching tokens: %v", name, err)
	}
	return nil
}

func (c *client) say(ctx context.Context, name, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.group(name)
	if err != nil {
		return err
	}
	if _, _, err := m.takeToken(); err != nil {
		return err // before the ratchet moves
	}
	msg, err := m.g.EncryptApplication([]byte(text), c.viewTag(m))
	if err != nil {
		return err
	}
	env, tok, recs, err := m.seal(msg)
	if err != nil {
		return err
	}
	// The ratchet moved: persist it with the sealed envelope in the outbox,
	// and the token taken out of the stock, before sending, so that a crash
	// can neither make this device reuse the key or the token for another
	// message nor lose this one (open sends the same envelope).
	recs = append(recs, mls.Record{Key: []byte("outbox-sealed"), Value: env})
	if err := c.save(ctx, m, nil, recs...); err != nil {
		return err
	}
	delete(m.tokens, tok.key)
	seq, err := c.sendEnvelope(ctx, m, env, "outbox-sealed")
	if err != nil {
		return err
	}
	if os.Getenv(crashAfterSendEnv) != "" {
		// Test hook: die after the server logged the message and before
		// the outbox is cleared, as a crash would.
		os.Exit(3)
	}
	m.own[seq] = true
	return c.save(ctx, m, nil, ownRecord(seq, true), mls.Record{Key: []byte("outbox-sealed")})
}

// crashAfterSendEnv names the environment variable that makes the client
// exit right after the server accepted a message and before it clears its
// outbox: a test hook for the re-send after a crash.
const crashAfterSendEnv = "MICROCHAT_TEST_CRASH_AFTER_SEND"

func (c *client) members(name string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.group(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mb := range m.g.Members() {
		out = append(out, string(mb.Credential.Identity))
	}
	return out, nil
}

// sync joins groups from waiting Welcomes and processes every group's new
// messages.
func (c *client) sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.syncWelcomes(ctx); err != nil {
		return err
	}
	for _, m := range c.groups {
		if err := c.syncGroup(ctx, m); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return nil
}

func (c *client) syncWelcomes(ctx context.Context) error {
	data, err := c.ds.get(ctx, "/v1/welcomes/"+hex.EncodeToString(c.cred.Identity))
	if err != nil {
		return err
	}
	var welcomes [][]byte
	if err := json.Unmarshal(data, &welcomes); err != nil {
		return err
	}
	for _, w := range welcomes {
		msg, err := mls.ParseMessage(w)
		if err != nil {
			c.out.printf("warning: bad Welcome: %v", err)
			continue
		}
		g, consumed, err := mls.JoinWithStore(ctx, msg, c.store, nil, c.cfg)
		if err != nil {
			c.out.printf("warning: cannot join: %v", err)
			continue
		}
		name := string(g.GroupID())
		m := newMember(name, g)
		if err := c.register(ctx, m, consumed); err != nil {
			return err
		}
		c.out.printf("[%s] joined, epoch %d, %d members", name, g.Epoch(), g.MemberCount())
		if err := c.refill(ctx, m); err != nil { // ahead of need
			c.out.printf("[%s] warning: fetching tokens: %v", name, err)
		}
		// Replace the one-time KeyPackage that was used.
		if len(consumed.KeyPackages) > 0 {
			if err := c.publishKeyPackage(ctx, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncGroup processes the group's log after its cursor. Messages from
// epochs before this member joined, and its own messages, are skipped.
func (c *client) syncGroup(ctx context.Context, m *member) error {
	for {
		data, err := c.ds.get(ctx, "/v1/groups/"+hex.EncodeToString(m.g.GroupID())+"/messages?after="+strconv.FormatInt(m.cursor, 10))
		if err != nil {
			return err
		}
		var entries []struct {
			Seq  int64  `json:"seq"`
			Data []byte `json:"data"`
		}
		if err := json.Unmarshal(data, &entries); err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		for _, e := range entries {
			if err := c.processEntry(ctx, m, e.Seq, e.Data); err != nil {
				return err
			}
			if c.groups[m.name] == nil {
				return nil // removed
			}
		}
	}
}

func (c *client) processEntry(ctx context.Context, m *member, seq int64, data []byte) error {
	m.cursor = seq
	if m.own[seq] {
		delete(m.own, seq)
		return c.save(ctx, m, nil, ownRecord(seq, false))
	}
	msg, err := mls.ParseMessage(data)
	if err != nil {
		c.out.printf("[%s] dropped a malformed message: %v", m.name, err)
		return c.save(ctx, m, nil)
	}
	if msg.Epoch() < m.g.Epoch() && msg.PrivateMessage == nil {
		return c.save(ctx, m, nil) // a handshake of an epoch already left
	}
	res, err := m.g.Process(msg)
	if err != nil {
		if errors.Is(err, mls.ErrWrongEpoch) {
			return c.save(ctx, m, nil)
		}
		c.out.printf("[%s] rejected a message: %v", m.name, err)
		return c.save(ctx, m, nil)
	}
	c.checkView(m, res) // before a commit moves the group to the next epoch
	switch {
	case res.Commit != nil:
		if err := m.g.Merge(res.Commit); err != nil {
			return err
		}
		if res.Commit.SelfRemoved {
			c.out.printf("[%s] removed from the group", m.name)
			delete(c.groups, m.name)
			sg, err := c.store.LoadGroupRecords(ctx, m.g.GroupID())
			if err != nil {
				return err
			}
			if err := c.store.DeleteGroup(ctx, m.g.GroupID(), sg.Revision); err != nil {
				return err
			}
			_, err = c.db.ExecContext(ctx, `DELETE FROM client_groups WHERE name = ?`, m.name)
			return err
		}
		c.out.printf("[%s] epoch %d, %d members", m.name, m.g.Epoch(), m.g.MemberCount())
	case res.ApplicationData != nil:
		c.out.printf("[%s] %s: %s", m.name, c.senderName(m, mls.LeafIndex(res.Sender.Index)), res.ApplicationData)
	}
	return c.save(ctx, m, nil)
}

func (c *client) senderName(m *member, leaf mls.LeafIndex) string {
	for _, mb := range m.g.Members() {
		if mb.Index == leaf {
			return string(mb.Credential.Identity)
		}
	}
	return "?"
}

// dsClient speaks the HTTP interface of examples/server.
type dsClient struct {
	base string
	http *http.Client
	// sealed carries the sealed envelopes (and the challenge requests),
	// each on a connection of its own: a connection kept alive would link
	// an envelope to the account that used the connection before, or to
	// the envelopes sent on it before.
	sealed   *http.Client
	tokenURL string // the issuer-request-uri of the issuer directory
}

func newDSClient(base string) *dsClient {
	return &dsClient{
		base:   base,
		http:   &http.Client{},
		sealed: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

// errNotFound is the server's 404.
var errNotFound = errors.New("server: not found")

// errUnauthorized is the server's 401: for an envelope, a token it does
// not accept.
var errUnauthorized = errors.New("server: unauthorized")

// errConflict is the server's answer to a commit that lost the race.
var errConflict = fmt.Errorf("%w: another commit of this epoch came first", mls.ErrConflict)

func (d *dsClient) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return d.doRequest(d.http, req)
}

func (d *dsClient) doRequest(hc *http.Client, req *http.Request) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusConflict:
		return nil, errConflict
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", errNotFound, bytes.TrimSpace(data))
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: %s", errUnauthorized, bytes.TrimSpace(data))
	case resp.StatusCode >= 300:
		return nil, fmt.Errorf("server: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

func (d *dsClient) get(ctx context.Context, path string) ([]byte, error) {
	return d.do(ctx, http.MethodGet, path, nil)
}

func (d *dsClient) post(ctx context.Context, path string, m *mls.MLSMessage, out any) error {
	data, err := m.Bytes()
	if err != nil {
		return err
	}
	resp, err := d.do(ctx, http.MethodPost, path, data)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(resp, out)
}

func (d *dsClient) put(ctx context.Context, path string, m *mls.MLSMessage) error {
	data, err := m.Bytes()
	if err != nil {
		return err
	}
	_, err = d.do(ctx, http.MethodPut, path, data)
	return err
}

// send posts a group message and returns its place in the group's log.
func (d *dsClient) send(ctx context.Context, groupID []byte, m *mls.MLSMessage) (int64, error) {
	var resp struct {
		Seq int64 `json:"seq"`
	}
	err := d.post(ctx, "/v1/groups/"+hex.EncodeToString(groupID)+"/messages", m, &resp)
	return resp.Seq, err
}
