package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

var cs = mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

func openStore(t testing.TB, path string) (*sql.DB, *Store) {
	t.Helper()
	db, err := OpenSQLite(path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	s, err := New(context.Background(), db, SQLite)
	require.NoError(t, err)
	return db, s
}

func credential(name string) mls.Credential {
	return mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}
}

func keyPackage(t testing.TB, name string) *mls.KeyPackagePrivate {
	t.Helper()
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	kp, err := mls.GenerateKeyPackage(cs, credential(name), sig, nil)
	require.NoError(t, err)
	return kp
}

// newPair returns a group of alice and bob plus extra members who never
// join (they only make the state larger), in epoch 1.
func newPair(t testing.TB, extra int) (alice, bob *mls.Group) {
	t.Helper()
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	alice, err = mls.NewGroup(cs, credential("alice"), sig, nil, nil)
	require.NoError(t, err)
	bobKP := keyPackage(t, "bob")
	add := []*mls.KeyPackage{bobKP.KeyPackage}
	for i := range extra {
		add = append(add, keyPackage(t, fmt.Sprintf("member-%d", i)).KeyPackage)
	}
	pc, err := alice.Commit(&mls.CommitOptions{Add: add})
	require.NoError(t, err)
	require.NoError(t, alice.MergePendingCommit(pc))
	if bob, err = mls.Join(pc.Welcome, bobKP, nil, nil); err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

func save(t testing.TB, s *Store, g *mls.Group, consumed *mls.Consumed) {
	t.Helper()
	require.NoError(t, mls.SaveGroup(context.Background(), s, g, &mls.SaveOptions{Consumed: consumed}))
}

func load(t testing.TB, s *Store, groupID []byte) *mls.Group {
	t.Helper()
	g, err := mls.OpenGroup(context.Background(), s, groupID, nil)
	require.NoError(t, err, "opening the stored group")
	return g
}

// exchange checks that a and b are in the same epoch with the same epoch
// authenticator and that b reads a message from a.
func exchange(t testing.TB, a, b *mls.Group) *mls.MLSMessage {
	t.Helper()
	if a.Epoch() != b.Epoch() || !bytes.Equal(a.EpochAuthenticator(), b.EpochAuthenticator()) {
		t.Fatalf("fork: epochs %d and %d", a.Epoch(), b.Epoch())
	}
	text := fmt.Appendf(nil, "hello in epoch %d", a.Epoch())
	msg, err := a.EncryptApplication(text, nil)
	require.NoError(t, err)
	res, err := b.Process(msg)
	require.NoError(t, err)
	require.Equal(t, text, res.ApplicationData, "wrong plaintext")
	return msg
}

const commitLog = `CREATE TABLE IF NOT EXISTS commit_log (epoch INTEGER PRIMARY KEY, msg BLOB NOT NULL)`

// TestHelperProcess is the child of TestCrashWhileSaving: it commits and
// saves in a loop until it is killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("E2EE_STORE_CRASH_DB")
	if path == "" {
		t.Skip("only run as a child of TestCrashWhileSaving")
	}
	ctx := context.Background()
	db, s := openStore(t, path)
	gid, err := strconv.Unquote(os.Getenv("E2EE_STORE_CRASH_GROUP"))
	require.NoError(t, err)
	g := recoverCommit(t, db, s, []byte(gid))
	fmt.Println("ready")
	for {
		// Store the commit, send (here: log) it, then merge and save the
		// epoch it leads to (the persistence protocol of package mls).
		pc, err := g.Commit(&mls.CommitOptions{ForcePath: true})
		require.NoError(t, err)
		require.NoError(t, mls.SavePendingCommit(ctx, s, g, pc, nil))
		data, err := pc.Commit.Bytes()
		require.NoError(t, err)
		if _, err := db.ExecContext(ctx, `INSERT INTO commit_log (epoch, msg) VALUES (?, ?)`, int64(g.Epoch()), data); err != nil {
			t.Fatal(err)
		}
		require.NoError(t, g.MergePendingCommit(pc))
		save(t, s, g, nil)
		fmt.Println("saved", g.Epoch())
		// And a message, which changes the state within the epoch.
		if _, err := g.EncryptApplication([]byte("x"), nil); err != nil {
			t.Fatal(err)
		}
		save(t, s, g, nil)
	}
}

// recoverCommit opens the group and finishes a commit stored before a
// crash as the delivery service (here: the commit log, which accepts one
// commit per epoch) decided: merged if logged, sent and merged if nothing
// was logged for its epoch.
func recoverCommit(t testing.TB, db *sql.DB, s *Store, gid []byte) *mls.Group {
	t.Helper()
	ctx := context.Background()
	g := load(t, s, gid)
	pc := g.RecoveredCommit()
	if pc == nil {
		return g
	}
	var data []byte
	err := db.QueryRowContext(ctx, `SELECT msg FROM commit_log WHERE epoch = ?`, int64(g.Epoch())).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		if data, err = pc.Commit.Bytes(); err != nil {
			t.Fatal(err)
		}
		_, err = db.ExecContext(ctx, `INSERT INTO commit_log (epoch, msg) VALUES (?, ?)`, int64(g.Epoch()), data)
	}
	require.NoError(t, err)
	msg, err := mls.ParseMessage(data)
	require.NoError(t, err)
	if !pc.Is(msg) {
		t.Fatal("the log holds another commit: only this process commits")
	}
	require.NoError(t, g.MergePendingCommit(pc))
	save(t, s, g, nil)
	return g
}

// randomInt returns a random integer in [0, n).
func randomInt(n int64) int64 {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return v.Int64()
}

// TestCrashWhileSaving kills a process that is saving group states, many
// times, and checks after each kill that the stored state loads (it is
// the old or the new epoch, never a torn mix) and that the group goes on
// from it.
func TestCrashWhileSaving(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "alice.db")
	db, s := openStore(t, path)
	if _, err := db.ExecContext(ctx, commitLog); err != nil {
		t.Fatal(err)
	}
	alice, bob := newPair(t, 30)
	gid := alice.GroupID()
	save(t, s, alice, nil)

	const kills = 25
	progressed := 0
	for i := range kills {
		before := load(t, s, gid)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "E2EE_STORE_CRASH_DB="+path, "E2EE_STORE_CRASH_GROUP="+strconv.Quote(string(gid)))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		// Kill the child after a random number of saved epochs (zero
		// included) and a random delay, so that kills land at every point
		// of a save.
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// confirmed is the last epoch the child reported saved: that save
		// returned, so it must survive the kill.
		confirmed := before.Epoch()
		record := func(l string) {
			if e, ok := strings.CutPrefix(l, "saved "); ok {
				n, err := strconv.ParseUint(e, 10, 64)
				require.NoError(t, err)
				confirmed = n
			}
		}
		wait := func(want string) {
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						cmd.Wait()
						t.Fatalf("child ended: %s", stderr.String())
					}
					record(l)
					if strings.HasPrefix(l, want) {
						return
					}
				case <-time.After(time.Minute):
					t.Fatal("child is stuck")
				}
			}
		}
		wait("ready")
		for range randomInt(3) {
			wait("saved")
		}
		time.Sleep(time.Duration(randomInt(int64(20 * time.Millisecond))))
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		for l := range lines {
			record(l)
		}

		// The state loads (a torn one would fail its decoding), and is
		// the last epoch the child confirmed or the one it was saving
		// when it was killed; a stored pending commit is finished.
		alice := recoverCommit(t, db, s, gid)
		if alice.Epoch() != confirmed && alice.Epoch() != confirmed+1 {
			t.Fatalf("kill %d: stored epoch %d, child confirmed epoch %d", i, alice.Epoch(), confirmed)
		}
		if alice.Epoch() > before.Epoch() {
			progressed++
		}
		// Bob follows the logged commits up to the stored epoch.
		for bob.Epoch() < alice.Epoch() {
			var data []byte
			require.NoError(t, db.QueryRowContext(ctx, `SELECT msg FROM commit_log WHERE epoch = ?`, int64(bob.Epoch())).Scan(&data), "kill %d: commit of epoch %d", i, bob.Epoch())
			msg, err := mls.ParseMessage(data)
			require.NoError(t, err)
			res, err := bob.Process(msg)
			require.NoError(t, err, "kill %d: bob processing the commit of epoch %d", i, bob.Epoch())
			require.NoError(t, bob.Merge(res.Commit))
		}
		// The group goes on: the members agree and can talk.
		exchange(t, alice, bob)
		save(t, s, alice, nil)
		exchange(t, bob, alice)
		save(t, s, alice, nil)
	}
	if progressed == 0 {
		t.Fatal("the child never saved a new epoch")
	}
	t.Logf("%d kills, %d of them after progress", kills, progressed)

	// A last commit from the reloaded state.
	alice = load(t, s, gid)
	pc, err := alice.Commit(&mls.CommitOptions{ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, alice.MergePendingCommit(pc))
	save(t, s, alice, nil)
	res, err := bob.Process(pc.Commit)
	require.NoError(t, err)
	require.NoError(t, bob.Merge(res.Commit))
	exchange(t, alice, bob)
}

// deliveryService is an in-process [mls.Transport]: it accepts one commit
// per epoch of each group.
type deliveryService struct {
	mu      sync.Mutex
	commits map[string][]*mls.MLSMessage // group ID -> commits, by epoch
}

var _ mls.Transport = (*deliveryService)(nil)

func (ds *deliveryService) Send(ctx context.Context, groupID []byte, msg *mls.MLSMessage) error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if msg.PublicMessage == nil || msg.PublicMessage.Content.ContentType != mls.ContentTypeCommit {
		return nil
	}
	log := ds.commits[string(groupID)]
	if msg.Epoch() != uint64(len(log)) {
		return fmt.Errorf("%w: a commit for epoch %d was already accepted", mls.ErrConflict, msg.Epoch())
	}
	ds.commits[string(groupID)] = append(log, msg)
	return nil
}

func (ds *deliveryService) SendWelcome(ctx context.Context, welcome *mls.MLSMessage) error {
	return nil
}

func (ds *deliveryService) FetchKeyPackages(ctx context.Context, identity []byte) ([]*mls.KeyPackage, error) {
	return nil, mls.ErrNotFound
}

func (ds *deliveryService) PublishGroupInfo(ctx context.Context, groupID []byte, gi *mls.MLSMessage) error {
	return nil
}

// TestConcurrentCommitters runs two writers sharing one member's state in
// one database (two processes of one device, each with its own database
// handle): in each round both open the same epoch, commit, and store
// their commit before sending it (SavePendingCommit); one wins, the other
// gets ErrConflict and sends nothing, and the group never forks.
func TestConcurrentCommitters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alice.db")
	_, s1 := openStore(t, path)
	_, s2 := openStore(t, path)
	testConcurrentCommitters(t, s1, s2)
}

// testConcurrentCommitters runs the scenario of TestConcurrentCommitters
// on two stores sharing one database.
func testConcurrentCommitters(t *testing.T, s1, s2 *Store) {
	ctx := context.Background()
	alice, bob := newPair(t, 0)
	gid := alice.GroupID()
	save(t, s1, alice, nil)
	ds := &deliveryService{commits: map[string][]*mls.MLSMessage{string(gid): {nil}}} // epoch 0's commit was sent before

	for round := range 10 {
		var (
			loaded, saved sync.WaitGroup
			mu            sync.Mutex
			winners       []*mls.MLSMessage
			conflicts     int
		)
		loaded.Add(2)
		for w, s := range []*Store{s1, s2} {
			saved.Go(func() {
				g, err := mls.OpenGroup(ctx, s, gid, nil)
				var pc *mls.PendingCommit
				if err == nil {
					pc, err = g.Commit(&mls.CommitOptions{ForcePath: true})
				}
				loaded.Done()
				if err != nil {
					t.Error(err)
					return
				}
				loaded.Wait() // both have opened the same revision
				err = mls.SavePendingCommit(ctx, s, g, pc, nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					// Stored first: now send, then merge and save. Only
					// the winner ever sends.
					if err := ds.Send(ctx, gid, pc.Commit); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
					winners = append(winners, pc.Commit)
					if err := g.MergePendingCommit(pc); err != nil {
						t.Error(err)
						return
					}
					if err := mls.SaveGroup(ctx, s, g, nil); err != nil {
						t.Error(err)
					}
				case errors.Is(err, mls.ErrConflict):
					conflicts++
				default:
					t.Errorf("writer %d: %v", w, err)
				}
			})
		}
		saved.Wait()
		if len(winners) != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d winners, %d conflicts", round, len(winners), conflicts)
		}
		res, err := bob.Process(winners[0])
		require.NoError(t, err)
		require.NoError(t, bob.Merge(res.Commit))
		a := load(t, s2, gid)
		exchange(t, a, bob)
		save(t, s1, a, nil)
		exchange(t, bob, a)
		save(t, s1, a, nil)
	}
	if n := len(ds.commits[string(gid)]); n != 11 {
		t.Fatalf("the delivery service accepted %d commits", n)
	}
}

// TestKeyPackageConsumed checks that after a KeyPackage is used to join,
// its private key is gone from the store, and from the database file.
func TestKeyPackageConsumed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bob.db")
	db, s := openStore(t, path)
	sig, _ := cs.GenerateSignatureKey()
	alice, err := mls.NewGroup(cs, credential("alice"), sig, nil, nil)
	require.NoError(t, err)
	kp := keyPackage(t, "bob")
	require.NoError(t, s.PutKeyPackage(ctx, kp))
	initKey := kp.InitKey.Bytes()
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	if !bytes.Contains(file, initKey) {
		t.Fatal("the init private key is not in the database file: the check below would prove nothing")
	}
	pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	require.NoError(t, alice.MergePendingCommit(pc))
	bob, consumed, err := mls.JoinWithStore(ctx, pc.Welcome, s, nil, nil)
	require.NoError(t, err)
	ref, _ := kp.KeyPackage.Ref()
	if len(consumed.KeyPackages) != 1 || !bytes.Equal(consumed.KeyPackages[0], ref) {
		t.Fatal("join did not report the consumed key package")
	}
	save(t, s, bob, consumed)
	if _, err := s.KeyPackagePrivate(ctx, ref); !errors.Is(err, mls.ErrNotFound) {
		t.Fatalf("key package after join: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM mls_key_packages`).Scan(&n); err != nil || n != 0 {
		t.Fatal(n, err)
	}
	if file, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, initKey) {
		t.Fatal("the init private key is still in the database file")
	}
	// Joining again with the same Welcome finds no key.
	if _, _, err := mls.JoinWithStore(ctx, pc.Welcome, s, nil, nil); !errors.Is(err, mls.ErrNotMember) {
		t.Fatalf("second join: %v", err)
	}
	// A second device racing to save a join with the same KeyPackage loses.
	if _, err := s.SaveGroupRecords(ctx, []byte("other"), 0, []mls.Record{{Key: []byte("h"), Value: []byte("x")}}, consumed); !errors.Is(err, mls.ErrConflict) {
		t.Fatalf("reused key package: %v", err)
	}
	if _, err := s.LoadGroupRecords(ctx, []byte("other")); !errors.Is(err, mls.ErrNotFound) {
		t.Fatal("a failed save left a state behind")
	}
	exchange(t, alice, bob)
}

func TestPSKs(t *testing.T) {
	_, s := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	testPSKs(t, s)
}

func testPSKs(t *testing.T, s *Store) {
	ctx := context.Background()
	require.NoError(t, s.PutPSK(ctx, []byte("id"), []byte("secret")))
	got, err := mls.StorePSKs(ctx, s).ExternalPSK([]byte("id"))
	if err != nil || string(got) != "secret" {
		t.Fatal(got, err)
	}
	if _, err := s.SaveGroupRecords(ctx, []byte("g"), 0, []mls.Record{{Key: []byte("h"), Value: []byte("x")}}, &mls.Consumed{PSKs: [][]byte{[]byte("id")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PSK(ctx, []byte("id")); !errors.Is(err, mls.ErrNotFound) {
		t.Fatal(err)
	}
}

// TestSpentTokens redeems the same tokens from many goroutines through
// several database handles, as several server processes would: each token
// is accepted exactly once.
func TestSpentTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spent.db")
	var stores []*Store
	for range 4 {
		_, s := openStore(t, path)
		stores = append(stores, s)
	}
	testSpentTokens(t, stores)
}

// testSpentTokens redeems tokens concurrently through stores that share
// one database.
func testSpentTokens(t *testing.T, stores []*Store) {
	const tokens = 100
	var accepted [tokens]int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for i := range tokens {
				j := (i*7 + w*13) % tokens // a different order in each redeemer
				d := sha256.Sum256([]byte{byte(j)})
				err := s.MarkSpent(d, 5)
				switch {
				case err == nil:
					mu.Lock()
					accepted[j]++
					mu.Unlock()
				case !errors.Is(err, sealedsender.ErrDoubleSpend):
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, n := range accepted {
		if n != 1 {
			t.Fatalf("token %d accepted %d times", i, n)
		}
	}
	require.NoError(t, stores[0].PruneSpent(context.Background(), 6))
	require.NoError(t, stores[1].MarkSpent(sha256.Sum256([]byte{0}), 6), "after pruning")
}

func TestRebind(t *testing.T) {
	got := PostgreSQL.rebind(`UPDATE t SET a = ?, b = ? WHERE c = ?`)
	if got != `UPDATE t SET a = $1, b = $2 WHERE c = $3` {
		t.Fatal(got)
	}
	if SQLite.rebind(`a = ?`) != `a = ?` {
		t.Fatal("sqlite rebind")
	}
}
