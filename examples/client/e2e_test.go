package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/microchat/e2ee/examples/store"
	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
	"github.com/stretchr/testify/require"
)

// proc is a running program whose output lines the test reads.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	seen  []string
}

func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, nil, bin, args...)
}

// startEnv starts a program with extra environment variables.
func startEnv(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	p := &proc{t: t, name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 1000)}
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			p.lines <- s.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

// expect waits for an output line matching re and returns it.
func (p *proc) expect(re string) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s exited while waiting for %q; output:\n%s", p.name, re, strings.Join(p.seen, "\n"))
			}
			p.seen = append(p.seen, l)
			if strings.HasPrefix(l, "error ") && !rx.MatchString(l) {
				p.t.Fatalf("%s: %s (waiting for %q)", p.name, l, re)
			}
			if rx.MatchString(l) {
				return l
			}
		case <-timeout:
			p.t.Fatalf("%s: timed out waiting for %q; output:\n%s", p.name, re, strings.Join(p.seen, "\n"))
		}
	}
}

// do sends a command and waits for its answer.
func (p *proc) do(cmd string) {
	p.t.Helper()
	_, err := fmt.Fprintln(p.stdin, cmd)
	require.NoError(p.t, err)
	verb := strings.Fields(cmd)[0]
	p.expect("^ok " + verb + "$")
}

// quit stops the program cleanly and waits for it.
func (p *proc) quit() {
	p.t.Helper()
	fmt.Fprintln(p.stdin, "quit")
	p.stdin.Close()
	for range p.lines {
	}
	require.NoError(p.t, p.cmd.Wait())
}

// TestNetworked runs the delivery service and three clients as separate
// processes on loopback: create, add, messages both ways, update, remove,
// external join, and a client restarting from its database.
//
// Every group message but the external join travels in a sealed envelope
// paid for with a Privacy Pass token: the test checks that the server's
// log holds no sender identity, that a token is accepted once, that a
// restart keeps a client's unused tokens, and that a client that crashed
// after sending sends the same envelope again without it being refused or
// delivered twice.
func TestNetworked(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs four processes")
	}
	dir := t.TempDir()
	build := func(pkg, out string) string {
		bin := filepath.Join(dir, out)
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", bin, pkg)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", b)
		return bin
	}
	serverBin := build("github.com/microchat/e2ee/examples/server", "server")
	clientBin := build("github.com/microchat/e2ee/examples/client", "client")

	srv := start(t, "server", serverBin, "-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "server.db"))
	addr := strings.TrimPrefix(srv.expect("^listening on "), "listening on ")
	url := "http://" + addr
	clientEnv := func(name string, env ...string) *proc {
		return startEnv(t, name, env, clientBin, "-server", url, "-name", name, "-db", filepath.Join(dir, name+".db"), "-poll", "100ms")
	}
	client := func(name string) *proc {
		p := clientEnv(name)
		p.expect("^ready " + name)
		return p
	}
	alice, bob, carol := client("alice"), client("bob"), client("carol")

	alice.do("create friends")
	alice.do("add friends bob")
	bob.expect(`^\[friends\] joined, epoch 1, 2 members$`)
	alice.do("add friends carol")
	carol.expect(`^\[friends\] joined, epoch 2, 3 members$`)
	bob.expect(`^\[friends\] epoch 2, 3 members$`)

	alice.do("say friends hello from alice")
	bob.expect(`^\[friends\] alice: hello from alice$`)
	carol.expect(`^\[friends\] alice: hello from alice$`)
	bob.do("say friends hi alice, bob here")
	alice.expect(`^\[friends\] bob: hi alice, bob here$`)
	carol.expect(`^\[friends\] bob: hi alice, bob here$`)

	// Post-compromise security: bob refreshes his keys.
	bob.do("update friends")
	alice.expect(`^\[friends\] epoch 3, 3 members$`)
	carol.expect(`^\[friends\] epoch 3, 3 members$`)
	carol.do("say friends after the update")
	alice.expect(`^\[friends\] carol: after the update$`)
	bob.expect(`^\[friends\] carol: after the update$`)

	// Carol restarts from her database and still reads and writes, with
	// the tokens she had: none fetched at start, none lost.
	carol.quit()
	stock := storedTokens(t, filepath.Join(dir, "carol.db"), "friends")
	require.NotZero(t, stock)
	carol = clientEnv("carol")
	carol.expect(fmt.Sprintf(`^ready carol \(1 groups, %d tokens\)$`, stock))
	alice.do("say friends welcome back")
	carol.expect(`^\[friends\] alice: welcome back$`)
	carol.do("say friends carol again")
	bob.expect(`^\[friends\] carol: carol again$`)

	// Carol crashes after the server logged her message and before she
	// cleared her outbox: at restart she sends the same envelope (the same
	// token) again, which the server answers as the message it has.
	carol.quit()
	stock = storedTokens(t, filepath.Join(dir, "carol.db"), "friends")
	carol = clientEnv("carol", crashAfterSendEnv+"=1")
	carol.expect("^ready carol")
	fmt.Fprintln(carol.stdin, "say friends sent once")
	carol.stdin.Close() // if it does not crash, it stops at the end of its input
	for l := range carol.lines {
		require.NotContains(t, l, "error say", "the send before the crash")
	}
	require.Error(t, carol.cmd.Wait(), "the client exits as if it crashed")
	require.Equal(t, stock-1, storedTokens(t, filepath.Join(dir, "carol.db"), "friends"), "the envelope's token left the stock with the save")
	carol = client("carol")
	alice.expect(`^\[friends\] carol: sent once$`)
	carol.do("say friends after the crash")
	alice.expect(`^\[friends\] carol: after the crash$`)
	bob.expect(`^\[friends\] carol: after the crash$`)
	for _, p := range []*proc{alice, bob} {
		n := 0
		for _, l := range p.seen {
			if strings.HasSuffix(l, "carol: sent once") {
				n++
			}
		}
		require.Equal(t, 1, n, "%s read the re-sent message once", p.name)
	}
	for _, l := range carol.seen {
		require.NotContains(t, l, "warning", "carol after the restart")
	}

	// Alice removes bob; bob reads nothing after that.
	alice.do("remove friends bob")
	bob.expect(`^\[friends\] removed from the group$`)
	carol.expect(`^\[friends\] epoch 4, 2 members$`)
	alice.do("say friends bob is gone")
	carol.expect(`^\[friends\] alice: bob is gone$`)

	// Dave joins by external commit from the published GroupInfo.
	dave := client("dave")
	dave.do("join friends")
	alice.expect(`^\[friends\] epoch 5, 3 members$`)
	carol.expect(`^\[friends\] epoch 5, 3 members$`)
	dave.do("say friends dave here")
	alice.expect(`^\[friends\] dave: dave here$`)
	carol.expect(`^\[friends\] dave: dave here$`)
	alice.do("members friends")

	bob.do("sync")
	for _, l := range bob.seen {
		require.NotContains(t, l, "bob is gone", "a removed member read a later message")
		require.NotContains(t, l, "dave here", "a removed member read a later message")
	}
	for _, p := range []*proc{alice, bob, carol, dave} {
		p.quit()
		for _, l := range p.seen {
			require.NotContains(t, l, "WARNING", "%s: no key mismatch", p.name)
			require.NotContains(t, l, "fetching tokens", "%s: tokens fetched", p.name)
		}
	}

	// What the server kept: the group's log has no sender identity. Every
	// message is a PrivateMessage except dave's external commit (which
	// names its sender by nature), no member's name appears in any of them,
	// and every PrivateMessage was paid for with a token spent on it.
	serverDB, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "server.db")+"?mode=ro")
	require.NoError(t, err)
	defer serverDB.Close()
	rows, err := serverDB.Query(`SELECT data FROM ds_messages WHERE group_id = ?`, []byte("friends"))
	require.NoError(t, err)
	private, public := 0, 0
	for rows.Next() {
		var data []byte
		require.NoError(t, rows.Scan(&data))
		m, err := mls.ParseMessage(data)
		require.NoError(t, err)
		switch {
		case m.PrivateMessage != nil:
			private++
			for _, name := range []string{"alice", "bob", "carol", "dave"} {
				require.False(t, bytes.Contains(data, []byte(name)), "%s named in a logged PrivateMessage", name)
			}
		case m.PublicMessage != nil:
			public++
			require.Equal(t, mls.SenderTypeNewMemberCommit, m.PublicMessage.Content.Sender.Type, "only the external join is public")
		}
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.Equal(t, 1, public)
	require.GreaterOrEqual(t, private, 13)
	var paid int
	require.NoError(t, serverDB.QueryRow(`SELECT COUNT(*) FROM ds_token_uses u JOIN ds_messages m ON m.group_id = u.group_id AND m.digest = u.digest`).Scan(&paid))
	require.Equal(t, private, paid, "each logged PrivateMessage came sealed with its own token")
	var spent int
	require.NoError(t, serverDB.QueryRow(`SELECT COUNT(*) FROM spent_tokens`).Scan(&spent))
	require.GreaterOrEqual(t, spent, private)

	// A token is accepted once: an envelope with another message is
	// refused, the same envelope again is the same message.
	checkTokenOnce(t, url)
}

// storedTokens counts the unused tokens of a group in a stopped client's
// database.
func storedTokens(t *testing.T, dbPath, group string) int {
	t.Helper()
	ctx := context.Background()
	db, err := store.OpenSQLite(dbPath)
	require.NoError(t, err)
	defer db.Close()
	st, err := store.New(ctx, db, store.SQLite)
	require.NoError(t, err)
	recs, err := mls.LoadAppRecords(ctx, st, []byte(group))
	require.NoError(t, err)
	n := 0
	for _, r := range recs {
		if _, ok := parseTokenRecord(r); ok {
			n++
		}
	}
	return n
}

// checkTokenOnce fetches a token from the running server as a standard
// Privacy Pass client would, spends it on one envelope, and checks that the
// same token with another message is refused and the same envelope again
// is answered as the same message. The messages are PrivateMessages of a
// group of their own (the server cannot decrypt them; it only routes).
func checkTokenOnce(t *testing.T, url string) {
	ctx := context.Background()
	ds := newDSClient(url)
	groupID := []byte("token-once")
	ch, err := ds.challenge(ctx, groupID)
	require.NoError(t, err)
	dir, err := ds.issuerDirectory(ctx)
	require.NoError(t, err)
	base := *ch.Challenge
	base.RedemptionContext = nil
	pp, err := sealedsender.NewPrivacyPassClient(dir, &base, &sealedsender.ClientConfig{Period: tokenPeriod})
	require.NoError(t, err)
	pending, req, err := pp.Request(pp.Challenge().ForGroup(groupID))
	require.NoError(t, err)
	resp, err := ds.issue(ctx, "mallory", req)
	require.NoError(t, err)
	tok, err := pending.Finalize(resp)
	require.NoError(t, err)

	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	g, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("mallory")}, sig,
		&mls.GroupOptions{GroupID: groupID}, &mls.Config{Handshake: mls.HandshakePrivate})
	require.NoError(t, err)
	envelope := func(text string) []byte {
		m, err := g.EncryptApplication([]byte(text), nil)
		require.NoError(t, err)
		env, err := sealedsender.SealMessage(sealedsender.SchemePrivacyPass, tok, m, nil)
		require.NoError(t, err)
		return env
	}
	first := envelope("first")
	seq, err := ds.sendSealed(ctx, groupID, first)
	require.NoError(t, err)
	_, err = ds.sendSealed(ctx, groupID, envelope("second"))
	require.ErrorIs(t, err, errUnauthorized)
	require.ErrorContains(t, err, sealedsender.ErrDoubleSpend.Error())
	again, err := ds.sendSealed(ctx, groupID, first)
	require.NoError(t, err)
	require.Equal(t, seq, again)
}
