package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
}

// member is the client's state in one group.
type member struct {
	name     string
	g        *mls.Group
	revision uint64
	cursor   int64          // last log entry processed
	own      map[int64]bool // log entries this client sent
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
		ds:     &dsClient{base: serverURL, http: &http.Client{}},
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
		`CREATE TABLE IF NOT EXISTS client_groups (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS client_own (name TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (name, seq))`,
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

	rows, err := c.db.QueryContext(ctx, `SELECT name, cursor FROM client_groups`)
	if err != nil {
		return err
	}
	type row struct {
		name   string
		cursor int64
	}
	var saved []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.name, &r.cursor); err != nil {
			rows.Close()
			return err
		}
		saved = append(saved, r)
	}
	rows.Close()
	for _, r := range saved {
		sg, err := c.store.LoadGroupState(ctx, []byte(r.name))
		if errors.Is(err, mls.ErrNotFound) {
			continue // left the group
		}
		if err != nil {
			return err
		}
		g, err := mls.LoadGroup(sg.State, c.cfg)
		if err != nil {
			return fmt.Errorf("loading group %s: %w", r.name, err)
		}
		m := &member{name: r.name, g: g, revision: sg.Revision, cursor: r.cursor, own: map[int64]bool{}}
		own, err := c.db.QueryContext(ctx, `SELECT seq FROM client_own WHERE name = ? AND seq > ?`, r.name, r.cursor)
		if err != nil {
			return err
		}
		for own.Next() {
			var seq int64
			if err := own.Scan(&seq); err != nil {
				own.Close()
				return err
			}
			m.own[seq] = true
		}
		own.Close()
		c.groups[r.name] = m
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

// save persists m's group state and cursor; consumed lists what the step
// used up (a KeyPackage on join).
func (c *client) save(ctx context.Context, m *member, consumed *mls.Consumed) error {
	state, err := m.g.MarshalState()
	if err != nil {
		return err
	}
	rev, err := c.store.SaveGroupState(ctx, m.g.GroupID(), m.g.Epoch(), state, m.revision, consumed)
	if err != nil {
		return err
	}
	m.revision = rev
	return c.saveCursor(ctx, m)
}

func (c *client) saveCursor(ctx context.Context, m *member) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO client_groups (name, cursor) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor`, m.name, m.cursor)
	return err
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
	m := &member{name: name, g: g, own: map[int64]bool{}}
	if err := c.save(ctx, m, nil); err != nil {
		return err
	}
	c.groups[name] = m
	return c.publishGroupInfo(ctx, m)
}

func (c *client) publishGroupInfo(ctx context.Context, m *member) error {
	gi, err := m.g.GroupInfo(true, true)
	if err != nil {
		return err
	}
	return c.ds.put(ctx, "/v1/groups/"+hex.EncodeToString(m.g.GroupID())+"/groupinfo", gi)
}

// commit catches up with the group, then creates a commit, sends it, and
// merges it only once the delivery service has accepted it as the one
// commit of the epoch (RFC 9420, §14). If another commit came first, it
// processes that one and reports the conflict.
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
	opts.GroupInfo, opts.ExternalPub = true, true
	pc, err := m.g.Commit(opts)
	if err != nil {
		return err
	}
	seq, err := c.ds.send(ctx, m.g.GroupID(), pc.Commit)
	if err != nil {
		return err
	}
	if err := m.g.MergePendingCommit(pc); err != nil {
		return err
	}
	m.own[seq] = true
	if _, err := c.db.ExecContext(ctx, `INSERT INTO client_own (name, seq) VALUES (?, ?)`, name, seq); err != nil {
		return err
	}
	if err := c.save(ctx, m, nil); err != nil {
		return err
	}
	if pc.Welcome != nil {
		if err := c.ds.post(ctx, "/v1/welcomes", pc.Welcome, nil); err != nil {
			return err
		}
	}
	c.out.printf("[%s] epoch %d, %d members", name, m.g.Epoch(), m.g.MemberCount())
	return c.ds.put(ctx, "/v1/groups/"+hex.EncodeToString(m.g.GroupID())+"/groupinfo", pc.GroupInfo)
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
	seq, err := c.ds.send(ctx, g.GroupID(), commit)
	if err != nil {
		return err
	}
	// Start reading after the join: earlier messages are not for us.
	m := &member{name: name, g: g, cursor: seq, own: map[int64]bool{}}
	if err := c.save(ctx, m, nil); err != nil {
		return err
	}
	c.groups[name] = m
	c.out.printf("[%s] joined, epoch %d, %d members", name, g.Epoch(), g.MemberCount())
	return c.publishGroupInfo(ctx, m)
}

func (c *client) say(ctx context.Context, name, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.group(name)
	if err != nil {
		return err
	}
	msg, err := m.g.EncryptApplication([]byte(text), nil)
	if err != nil {
		return err
	}
	// The ratchet moved: persist before sending, so that a crash cannot
	// make this device reuse the key for another message.
	if err := c.save(ctx, m, nil); err != nil {
		return err
	}
	seq, err := c.ds.send(ctx, m.g.GroupID(), msg)
	if err != nil {
		return err
	}
	m.own[seq] = true
	_, err = c.db.ExecContext(ctx, `INSERT INTO client_own (name, seq) VALUES (?, ?)`, name, seq)
	return err
}

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
		m := &member{name: name, g: g, own: map[int64]bool{}}
		if err := c.save(ctx, m, consumed); err != nil {
			return err
		}
		c.groups[name] = m
		c.out.printf("[%s] joined, epoch %d, %d members", name, g.Epoch(), g.MemberCount())
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
		return c.saveCursor(ctx, m)
	}
	msg, err := mls.ParseMessage(data)
	if err != nil {
		c.out.printf("[%s] dropped a malformed message: %v", m.name, err)
		return c.saveCursor(ctx, m)
	}
	if msg.Epoch() < m.g.Epoch() && msg.PrivateMessage == nil {
		return c.saveCursor(ctx, m) // a handshake of an epoch already left
	}
	res, err := m.g.Process(msg)
	if err != nil {
		if errors.Is(err, mls.ErrWrongEpoch) {
			return c.saveCursor(ctx, m)
		}
		c.out.printf("[%s] rejected a message: %v", m.name, err)
		return c.saveCursor(ctx, m)
	}
	switch {
	case res.Commit != nil:
		if err := m.g.Merge(res.Commit); err != nil {
			return err
		}
		if res.Commit.SelfRemoved {
			c.out.printf("[%s] removed from the group", m.name)
			delete(c.groups, m.name)
			if err := c.store.DeleteGroupState(ctx, m.g.GroupID(), m.revision); err != nil {
				return err
			}
			_, err := c.db.ExecContext(ctx, `DELETE FROM client_groups WHERE name = ?`, m.name)
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
}

// errConflict is the server's answer to a commit that lost the race.
var errConflict = fmt.Errorf("%w: another commit of this epoch came first", mls.ErrConflict)

func (d *dsClient) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
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
