// Command client is a MicroChat client for the delivery service in
// examples/server: one device of one user, with its groups and keys
// persisted on SQLite, so that it can be stopped and started again.
//
//	go run ./examples/server &
//	go run ./examples/client -name alice -db alice.db
//
// It reads commands, one per line, from standard input:
//
//	create GROUP            create a group
//	add GROUP NAME          add NAME (one of their published KeyPackages)
//	remove GROUP NAME       remove NAME
//	update GROUP            refresh this member's keys (post-compromise security)
//	join GROUP              join by external commit from the published GroupInfo
//	say GROUP TEXT...       send a message
//	members GROUP           list the members
//	sync                    fetch now (the client also polls in the background)
//	quit
//
// Group messages, handshakes included, go to the server in sealed
// envelopes (package sealedsender) with no sender identity, paid for with
// Privacy Pass tokens the client fetches ahead of need (tokens.go); only
// an external join, which names the joiner anyway, is sent in the clear.
//
// Each command answers "ok CMD" or "error CMD: REASON"; what arrives is
// printed as it is processed ("[GROUP] alice: hello"). The output is
// line-oriented so that scripts (and this example's test) can drive it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8080", "delivery service URL")
	name := flag.String("name", "", "this user's name (required)")
	dbPath := flag.String("db", "", "SQLite database file (default NAME.db)")
	poll := flag.Duration("poll", 300*time.Millisecond, "how often to fetch new messages")
	flag.Parse()
	if *name == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *dbPath == "" {
		*dbPath = *name + ".db"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *server, *name, *dbPath, *poll, os.Stdin, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// lockedWriter serializes the output of the command loop and the poller.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

func run(ctx context.Context, serverURL, name, dbPath string, poll time.Duration, in io.Reader, out io.Writer) error {
	w := &lockedWriter{w: out}
	c, err := openClient(ctx, serverURL, name, dbPath, w)
	if err != nil {
		return err
	}
	defer c.close()
	w.printf("ready %s (%d groups, %d tokens)", name, len(c.groups), c.tokenCount())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.sync(ctx); err != nil && ctx.Err() == nil {
					w.printf("warning: sync: %v", err)
				}
			}
		}
	}()
	// The token job: tops up each group's stock of sealed-sender tokens on
	// a jittered timer of its own, unrelated to sending (tokens.go). The
	// first run checks the issuer's keys and challenge after a start.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c.refillAll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(poll * time.Duration(2+rand.IntN(8))):
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	lines := bufio.NewScanner(in)
	for lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "quit" {
			break
		}
		if err := c.command(ctx, f); err != nil {
			w.printf("error %s: %v", f[0], err)
		} else {
			w.printf("ok %s", f[0])
		}
	}
	return lines.Err()
}

var errUsage = errors.New("usage: see the package documentation")

func (c *client) command(ctx context.Context, f []string) error {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	if len(f) < 2 && f[0] != "sync" {
		return errUsage
	}
	switch f[0] {
	case "create":
		return c.create(ctx, f[1])
	case "add":
		if arg(2) == "" {
			return errUsage
		}
		return c.add(ctx, f[1], f[2])
	case "remove":
		if arg(2) == "" {
			return errUsage
		}
		return c.remove(ctx, f[1], f[2])
	case "update":
		return c.update(ctx, f[1])
	case "join":
		return c.joinExternal(ctx, f[1])
	case "say":
		return c.say(ctx, f[1], strings.Join(f[2:], " "))
	case "members":
		names, err := c.members(f[1])
		if err != nil {
			return err
		}
		c.out.printf("[%s] members: %s", f[1], strings.Join(names, " "))
		return nil
	case "sync":
		return c.sync(ctx)
	}
	return errUsage
}
