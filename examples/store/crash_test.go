package store

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/mls"
)

// The crash tests run one member's step of the persistence protocol of
// package mls (committing, committing when another commit wins, sending,
// receiving, joining) in a child process, kill it with SIGKILL after each
// step in turn, restart it (open and recover), and check the protocol's
// guarantees with three other members on SQLite:
//   - no fork: every member ends in the same epoch with the same epoch
//     authenticator;
//   - nobody stuck: every member then sends and reads a message;
//   - no accepted message lost: every application message the delivery
//     service accepted was read by every other member;
//   - no key reused: no member ever gets ErrKeyUsed (two messages under
//     one key and nonce), nor any other error, on what the delivery service
//     accepted.

// crashDS is a delivery service on its own SQLite database, shared by the
// processes: it accepts one commit per epoch and keeps every message in
// order; sending the same bytes twice is accepted once.
type crashDS struct{ db *sql.DB }

func openCrashDS(t testing.TB, dir string) *crashDS {
	t.Helper()
	db, err := OpenSQLite(filepath.Join(dir, "ds.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS msgs (seq INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, data BLOB NOT NULL UNIQUE)`,
		`CREATE TABLE IF NOT EXISTS commits (epoch INTEGER PRIMARY KEY, data BLOB NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS welcomes (data BLOB NOT NULL UNIQUE)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return &crashDS{db}
}

func (d *crashDS) send(sender string, msg *mls.MLSMessage) error {
	data, err := msg.Bytes()
	if err != nil {
		return err
	}
	tx, err := d.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if msg.PublicMessage != nil && msg.PublicMessage.Content.ContentType == mls.ContentTypeCommit {
		var prev []byte
		err := tx.QueryRow(`SELECT data FROM commits WHERE epoch = ?`, int64(msg.Epoch())).Scan(&prev)
		switch {
		case err == nil && !bytes.Equal(prev, data):
			return fmt.Errorf("%w: epoch %d has another commit", mls.ErrConflict, msg.Epoch())
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.Exec(`INSERT INTO commits (epoch, data) VALUES (?, ?)`, int64(msg.Epoch()), data); err != nil {
				return err
			}
		case err != nil:
			return err
		}
	}
	if _, err := tx.Exec(`INSERT INTO msgs (sender, data) VALUES (?, ?) ON CONFLICT (data) DO NOTHING`, sender, data); err != nil {
		return err
	}
	return tx.Commit()
}

func (d *crashDS) commitAt(epoch uint64) *mls.MLSMessage {
	var data []byte
	if err := d.db.QueryRow(`SELECT data FROM commits WHERE epoch = ?`, int64(epoch)).Scan(&data); err != nil {
		return nil
	}
	m, _ := mls.ParseMessage(data)
	return m
}

type dsMsg struct {
	seq    int64
	sender string
	msg    *mls.MLSMessage
}

func (d *crashDS) after(t testing.TB, seq int64) []dsMsg {
	t.Helper()
	rows, err := d.db.Query(`SELECT seq, sender, data FROM msgs WHERE seq > ? ORDER BY seq`, seq)
	require.NoError(t, err)
	defer rows.Close()
	var out []dsMsg
	for rows.Next() {
		var m dsMsg
		var data []byte
		require.NoError(t, rows.Scan(&m.seq, &m.sender, &data))
		if m.msg, err = mls.ParseMessage(data); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// node is one member: its store and group.
type node struct {
	name string
	dir  string
	s    *Store
	g    *mls.Group
	ds   *crashDS
	step func(string) // called between the steps of a flow
}

func openNode(t testing.TB, dir, name string, ds *crashDS) *node {
	_, s := openStore(t, filepath.Join(dir, name+".db"))
	return &node{name: name, dir: dir, s: s, ds: ds, step: func(string) {}}
}

func (n *node) save(t testing.TB, app ...mls.Record) {
	t.Helper()
	require.NoError(t, mls.SaveGroup(context.Background(), n.s, n.g, &mls.SaveOptions{App: app}), "%s", n.name)
}

func (n *node) appRecord(t testing.TB, key string) []byte {
	t.Helper()
	recs, err := mls.LoadAppRecords(context.Background(), n.s, n.g.GroupID())
	require.NoError(t, err)
	for _, r := range recs {
		if string(r.Key) == key {
			return r.Value
		}
	}
	return nil
}

// restart opens the member's group after a crash and finishes what was
// interrupted, as the protocol says: a stored commit, the outbox, and the
// messages not yet read.
func (n *node) restart(t testing.TB, gid []byte) {
	t.Helper()
	ctx := context.Background()
	g, err := mls.OpenGroup(ctx, n.s, gid, nil)
	if errors.Is(err, mls.ErrNotFound) {
		n.join(t)
		return
	}
	require.NoError(t, err, "%s: opening", n.name)
	n.g = g
	if pc := g.RecoveredCommit(); pc != nil {
		accepted := n.ds.commitAt(g.Epoch())
		if accepted == nil {
			// The delivery service has none: send the same commit again.
			require.NoError(t, n.ds.send(n.name, pc.Commit))
			accepted = pc.Commit
		}
		if pc.Is(accepted) {
			// Send the Welcome (again: the delivery service takes it
			// once), then merge and save.
			n.sendWelcome(t, pc)
			require.NoError(t, g.MergePendingCommit(pc))
			n.save(t)
		} else {
			require.NoError(t, mls.SaveGroup(ctx, n.s, g, &mls.SaveOptions{DiscardPendingCommit: true}))
		}
	}
	recs, err := mls.LoadAppRecords(ctx, n.s, gid)
	require.NoError(t, err)
	for _, r := range recs {
		if strings.HasPrefix(string(r.Key), "outbox/") {
			m, err := mls.ParseMessage(r.Value)
			require.NoError(t, err)
			require.NoError(t, n.ds.send(n.name, m))
			n.save(t, mls.Record{Key: r.Key})
		}
	}
	n.catchUp(t)
}

// join joins from the Welcome waiting at the delivery service; the
// messages before it are not the joiner's.
func (n *node) join(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	var data []byte
	require.NoError(t, n.ds.db.QueryRow(`SELECT data FROM welcomes`).Scan(&data), "%s: no Welcome", n.name)
	w, err := mls.ParseMessage(data)
	require.NoError(t, err)
	var last int64
	require.NoError(t, n.ds.db.QueryRow(`SELECT COALESCE(MAX(seq), 0) FROM msgs`).Scan(&last))
	g, consumed, err := mls.JoinWithStore(ctx, w, n.s, nil, nil)
	require.NoError(t, err, "%s: joining", n.name)
	n.g = g
	n.step("joined")
	seq := []byte(strconv.FormatInt(last, 10))
	require.NoError(t, mls.SaveGroup(ctx, n.s, g, &mls.SaveOptions{Consumed: consumed, App: []mls.Record{{Key: []byte("cursor"), Value: seq}, {Key: []byte("joined"), Value: seq}}}))
	n.step("saved")
	n.catchUp(t)
}

// catchUp reads every message after the member's cursor, saving after
// each, with the plaintext and the new cursor in the same step.
func (n *node) catchUp(t testing.TB) {
	t.Helper()
	cursor, _ := strconv.ParseInt(string(n.appRecord(t, "cursor")), 10, 64)
	for _, m := range n.ds.after(t, cursor) {
		recs := []mls.Record{{Key: []byte("cursor"), Value: []byte(strconv.FormatInt(m.seq, 10))}}
		switch {
		case m.sender == n.name:
			// Our own message: sent, or merged through the recovered commit.
		case m.msg.WireFormat == mls.WireFormatPublicMessage && m.msg.Epoch() < n.g.Epoch():
			// A commit we already merged.
		default:
			res, err := n.g.Process(m.msg)
			require.NoError(t, err, "%s: message %d from %s", n.name, m.seq, m.sender)
			if res.Commit != nil {
				require.NoError(t, n.g.Merge(res.Commit))
			} else {
				recs = append(recs, mls.Record{Key: fmt.Appendf(nil, "log/%d", m.seq), Value: res.ApplicationData})
			}
			n.step("decrypted")
		}
		n.save(t, recs...)
		n.step("saved")
	}
}

// commit runs the commit flow: build, store, send, merge and save. A
// commit another member's beat is dropped, and the winner read.
func (n *node) commit(t testing.TB, opts *mls.CommitOptions) {
	t.Helper()
	ctx := context.Background()
	pc, err := n.g.Commit(opts)
	require.NoError(t, err)
	n.step("built")
	require.NoError(t, mls.SavePendingCommit(ctx, n.s, n.g, pc, nil))
	n.step("stored")
	err = n.ds.send(n.name, pc.Commit)
	if errors.Is(err, mls.ErrConflict) {
		n.step("refused")
		n.catchUp(t) // merging the winner drops ours
		return
	}
	require.NoError(t, err)
	n.step("accepted")
	n.sendWelcome(t, pc)
	n.step("welcomed")
	require.NoError(t, n.g.MergePendingCommit(pc))
	n.save(t)
}

// sendWelcome sends the Welcome of a commit, if it has one.
func (n *node) sendWelcome(t testing.TB, pc *mls.PendingCommit) {
	t.Helper()
	if pc.Welcome == nil {
		return
	}
	data, _ := pc.Welcome.Bytes()
	if _, err := n.ds.db.Exec(`INSERT INTO welcomes (data) VALUES (?) ON CONFLICT (data) DO NOTHING`, data); err != nil {
		t.Fatal(err)
	}
}

// send runs the send flow: encrypt, save with the message in the outbox,
// send, clear the outbox.
func (n *node) send(t testing.TB, text string) {
	t.Helper()
	m, err := n.g.EncryptApplication([]byte(text), nil)
	require.NoError(t, err)
	n.step("encrypted")
	data, _ := m.Bytes()
	key := []byte("outbox/" + text)
	n.save(t, mls.Record{Key: key, Value: data})
	n.step("stored")
	require.NoError(t, n.ds.send(n.name, m))
	n.step("sent")
	n.save(t, mls.Record{Key: key})
}

// crashWorld is a group of alice, bob and carol, each with its own
// database, and dave, who has a KeyPackage stored and is not a member.
type crashWorld struct {
	dir   string
	ds    *crashDS
	gid   []byte
	nodes map[string]*node
}

func newCrashWorld(t *testing.T) *crashWorld {
	ctx := context.Background()
	w := &crashWorld{dir: t.TempDir(), nodes: map[string]*node{}}
	w.ds = openCrashDS(t, w.dir)
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		w.nodes[name] = openNode(t, w.dir, name, w.ds)
	}
	alice := w.nodes["alice"]
	sig, _ := cs.GenerateSignatureKey()
	var err error
	if alice.g, err = mls.NewGroup(cs, credential("alice"), sig, nil, nil); err != nil {
		t.Fatal(err)
	}
	alice.save(t)
	w.gid = alice.g.GroupID()
	var kps []*mls.KeyPackage
	for _, name := range []string{"bob", "carol", "dave"} {
		kp := keyPackage(t, name)
		require.NoError(t, w.nodes[name].s.PutKeyPackage(ctx, kp))
		if name != "dave" {
			kps = append(kps, kp.KeyPackage)
		}
	}
	alice.commit(t, &mls.CommitOptions{Add: kps})
	for _, name := range []string{"bob", "carol"} {
		w.nodes[name].join(t)
	}
	if _, err := w.ds.db.Exec(`DELETE FROM welcomes`); err != nil {
		t.Fatal(err)
	}
	return w
}

// setup prepares the world for a flow, before the child runs it.
func (w *crashWorld) setup(t *testing.T, flow string) {
	switch flow {
	case "commit-lost":
		w.nodes["bob"].commit(t, &mls.CommitOptions{ForcePath: true})
	case "receive":
		w.nodes["bob"].send(t, "from bob")
	case "join":
		w.nodes["alice"].commit(t, &mls.CommitOptions{Add: []*mls.KeyPackage{daveKP(t, w.dir)}})
	}
}

// daveKP returns dave's KeyPackage, as the delivery service would hand
// it out.
func daveKP(t testing.TB, dir string) *mls.KeyPackage {
	dave := openNode(t, dir, "dave", nil)
	ref := make([]mls.KeyPackageRef, 0)
	rows, err := dave.s.db.Query(`SELECT ref FROM mls_key_packages`)
	require.NoError(t, err)
	for rows.Next() {
		var r []byte
		rows.Scan(&r)
		ref = append(ref, r)
	}
	rows.Close()
	_, kp, err := dave.s.FindKeyPackage(context.Background(), ref)
	require.NoError(t, err)
	return kp.KeyPackage
}

// flowMember is the member that runs each flow in the child.
var flowMember = map[string]string{"commit": "alice", "add": "alice", "commit-lost": "alice", "send": "alice", "receive": "alice", "join": "dave", "send-unsafe": "alice"}

// flowSteps are the steps after which the child is killed, in order.
var flowSteps = map[string][]string{
	"commit":      {"built", "stored", "accepted", "welcomed"},
	"add":         {"built", "stored", "accepted", "welcomed"},
	"commit-lost": {"built", "stored", "refused", "decrypted", "saved"},
	"send":        {"encrypted", "stored", "sent"},
	"receive":     {"decrypted", "saved"},
	"join":        {"joined", "saved"},
	"send-unsafe": {"sent"},
}

// runFlow runs a flow as the member n.
func runFlow(t testing.TB, n *node, flow string) {
	switch flow {
	case "commit", "commit-lost":
		n.commit(t, &mls.CommitOptions{ForcePath: true})
	case "add":
		n.commit(t, &mls.CommitOptions{Add: []*mls.KeyPackage{daveKP(t, n.dir)}})
	case "send":
		n.send(t, "from alice")
	case "receive":
		n.catchUp(t)
	case "join":
		n.join(t)
	case "send-unsafe":
		// The order the protocol forbids: send, then save.
		m, err := n.g.EncryptApplication([]byte("sent before saving"), nil)
		require.NoError(t, err)
		require.NoError(t, n.ds.send(n.name, m))
		n.step("sent")
		n.save(t)
	}
}

// TestCrashStepHelper is the child of TestCrashSteps.
func TestCrashStepHelper(t *testing.T) {
	dir, flow := os.Getenv("E2EE_CRASH_DIR"), os.Getenv("E2EE_CRASH_FLOW")
	if dir == "" {
		t.Skip("only run as a child of TestCrashSteps")
	}
	ds := openCrashDS(t, dir)
	n := openNode(t, dir, flowMember[flow], ds)
	in := bufio.NewReader(os.Stdin)
	n.step = func(name string) {
		fmt.Println("step", name)
		if _, err := in.ReadString('\n'); err != nil {
			os.Exit(0)
		}
	}
	gid, _ := strconv.Unquote(os.Getenv("E2EE_CRASH_GROUP"))
	if flow != "join" {
		g, err := mls.OpenGroup(context.Background(), n.s, []byte(gid), nil)
		require.NoError(t, err)
		n.g = g
	}
	runFlow(t, n, flow)
	fmt.Println("done")
}

// TestCrashSteps kills the member running each flow after each of its
// steps (and once not at all), restarts it, and checks the guarantees.
func TestCrashSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, flow := range []string{"commit", "add", "commit-lost", "send", "receive", "join"} {
		steps := flowSteps[flow]
		for k := 0; k <= len(steps); k++ {
			name := "completed"
			if k < len(steps) {
				name = "after-" + steps[k]
			}
			t.Run(flow+"/"+name, func(t *testing.T) {
				w := newCrashWorld(t)
				w.setup(t, flow)
				killed := w.runChild(t, flow, k)
				t.Logf("killed after %q", killed)
				w.check(t, flow)
			})
		}
	}
}

// runChild runs the flow in a child process and kills it after its k-th
// step (k = len(steps): let it finish). It returns the last step seen.
func (w *crashWorld) runChild(t *testing.T, flow string, k int) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashStepHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "E2EE_CRASH_DIR="+w.dir, "E2EE_CRASH_FLOW="+flow, "E2EE_CRASH_GROUP="+strconv.Quote(string(w.gid)))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	seen, last := 0, "start"
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer deadline.Stop()
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "--- FAIL") || strings.Contains(l, "Error") {
			t.Errorf("child: %s", l)
		}
		name, ok := strings.CutPrefix(l, "step ")
		if !ok {
			continue
		}
		if seen >= len(flowSteps[flow]) || name != flowSteps[flow][seen] {
			fmt.Fprintln(stdin, "go") // a step not counted here
			continue
		}
		seen, last = seen+1, name
		if seen == k+1 {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			break
		}
		fmt.Fprintln(stdin, "go")
	}
	stdin.Close()
	err = cmd.Wait()
	if k == len(flowSteps[flow]) && err != nil {
		t.Fatalf("child failed: %v\n%s", err, stderr.String())
	}
	if k < len(flowSteps[flow]) && seen != k+1 {
		t.Fatalf("child ended after %d steps: %v\n%s", seen, err, stderr.String())
	}
	return last
}

// check restarts the member that ran the flow, lets everyone catch up,
// and checks the four guarantees.
func (w *crashWorld) check(t *testing.T, flow string) {
	runner := w.nodes[flowMember[flow]]
	// The child's own database handle is gone; reopen, as after a reboot.
	*runner = *openNode(t, w.dir, runner.name, w.ds)
	runner.restart(t, w.gid)
	members := []*node{w.nodes["alice"], w.nodes["bob"], w.nodes["carol"]}
	if flow == "add" {
		// Dave joins if the delivery service accepted the commit that
		// adds him: its Welcome must then have been sent.
		if w.ds.commitAt(1) != nil {
			dave := w.nodes["dave"]
			dave.restart(t, w.gid)
		}
	}
	if w.nodes["dave"].g != nil {
		members = append(members, w.nodes["dave"])
	}
	for _, n := range members {
		if n != runner {
			n.catchUp(t)
		}
	}
	// Nobody stuck: each member sends, everyone reads.
	for _, n := range members {
		n.send(t, "final from "+n.name)
		for _, m := range members {
			m.catchUp(t)
		}
	}
	// No fork.
	for _, n := range members[1:] {
		if n.g.Epoch() != members[0].g.Epoch() || !bytes.Equal(n.g.EpochAuthenticator(), members[0].g.EpochAuthenticator()) {
			t.Fatalf("fork: %s in epoch %d, %s in epoch %d", members[0].name, members[0].g.Epoch(), n.name, n.g.Epoch())
		}
	}
	// No accepted message lost: every application message is in the log
	// of every other member that was in the group when it was sent.
	for _, m := range w.ds.after(t, 0) {
		if m.msg.WireFormat != mls.WireFormatPrivateMessage {
			continue
		}
		for _, n := range members {
			if n.name == m.sender {
				continue
			}
			if n.appRecord(t, fmt.Sprintf("log/%d", m.seq)) == nil {
				if joined, _ := strconv.ParseInt(string(n.appRecord(t, "joined")), 10, 64); m.seq <= joined {
					continue // sent before n joined
				}
				t.Fatalf("%s never read message %d from %s", n.name, m.seq, m.sender)
			}
		}
	}
	// Nothing left to send.
	for _, n := range members {
		recs, err := mls.LoadAppRecords(context.Background(), n.s, w.gid)
		require.NoError(t, err)
		for _, r := range recs {
			if strings.HasPrefix(string(r.Key), "outbox/") {
				t.Fatalf("%s: %s still in the outbox", n.name, r.Key)
			}
		}
	}
}

// TestCrashUnsafeOrderIsCaught checks that the checks above can fail: a
// member that sends before saving the ratchet and is killed in between
// reuses the key after restarting, and the receiver's ErrKeyUsed (what
// catchUp fails on) shows it.
func TestCrashUnsafeOrderIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	w := newCrashWorld(t)
	w.runChild(t, "send-unsafe", 0)
	alice, bob := w.nodes["alice"], w.nodes["bob"]
	*alice = *openNode(t, w.dir, "alice", w.ds)
	alice.restart(t, w.gid)
	alice.send(t, "after the restart")
	var errs []error
	for _, m := range w.ds.after(t, 0) {
		if m.sender != "alice" || m.msg.WireFormat != mls.WireFormatPrivateMessage {
			continue
		}
		if _, err := bob.g.Process(m.msg); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) != 1 || !errors.Is(errs[0], mls.ErrKeyUsed) {
		t.Fatalf("want one ErrKeyUsed, got %v", errs)
	}
}
