package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	cmd := exec.Command(bin, args...)
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
	client := func(name string) *proc {
		p := start(t, name, clientBin, "-server", url, "-name", name, "-db", filepath.Join(dir, name+".db"), "-poll", "100ms")
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

	// Carol restarts from her database and still reads and writes.
	carol.quit()
	carol = client("carol")
	alice.do("say friends welcome back")
	carol.expect(`^\[friends\] alice: welcome back$`)
	carol.do("say friends carol again")
	bob.expect(`^\[friends\] carol: carol again$`)

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
	}
}
