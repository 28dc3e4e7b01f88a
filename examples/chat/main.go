// Command chat is the MicroChat example: several clients and a delivery
// service in one process, talking only through the transport interface and
// serialized bytes, each client persisting its state in a database.
//
// It creates a group, adds members from their KeyPackages, exchanges
// messages through sealed envelopes paid for with Privacy Pass tokens, has
// a member update its keys (post-compromise security), removes a member and
// shows that it can no longer read, has a new device join by external
// commit, restarts a client from its database, and prints a transcript of
// each step with the epoch.
//
//	go run ./examples/chat [-suite 1..7] [-members N] [-db dir]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/microchat/e2ee/mls"
)

func main() {
	suite := flag.Uint("suite", 1, "MLS cipher suite, 1 to 7")
	members := flag.Int("members", 4, "group size, 3 to 10000 (members beyond the four named clients are added but stay offline)")
	dbDir := flag.String("db", "", "folder for the clients' databases (default: a temporary folder, removed at exit)")
	flag.Parse()
	if err := run(mls.CipherSuite(*suite), *members, *dbDir, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// step prints one line of the transcript.
type transcript struct {
	w     io.Writer
	start time.Time
}

func (t *transcript) say(epoch uint64, format string, args ...any) {
	fmt.Fprintf(t.w, "[epoch %2d] %s\n", epoch, fmt.Sprintf(format, args...))
}

func (t *transcript) note(format string, args ...any) {
	fmt.Fprintf(t.w, "           %s\n", fmt.Sprintf(format, args...))
}

// progress draws a progress bar on w for long set-ups.
func progress(w io.Writer, label string, done, total int) {
	if total < 200 {
		return
	}
	const width = 30
	n := done * width / total
	fmt.Fprintf(w, "\r           %s [%s%s] %d/%d", label, strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
	if done == total {
		fmt.Fprintln(w)
	}
}

func run(cs mls.CipherSuite, members int, dbDir string, w io.Writer) error {
	if !cs.Supported() {
		return fmt.Errorf("unsupported cipher suite %d", uint16(cs))
	}
	if members < 3 || members > 10000 {
		return fmt.Errorf("-members must be between 3 and 10000")
	}
	ctx := context.Background()
	t := &transcript{w: w, start: time.Now()}
	if dbDir == "" {
		d, err := os.MkdirTemp("", "microchat-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dbDir = d
	}
	dsStore, err := openStore(dbDir, "delivery-service")
	if err != nil {
		return err
	}
	ds, err := newDeliveryService(dsStore)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "MicroChat example: suite %v, %d members, databases in %s\n\n", cs, members, dbDir)

	names := []string{"alice", "bob", "carol", "dave"}
	if members < len(names) {
		names = names[:members]
	}
	clients := map[string]*client{}
	for _, n := range names {
		st, err := openStore(dbDir, n)
		if err != nil {
			return err
		}
		c, err := newClient(ds, cs, n, st)
		if err != nil {
			return err
		}
		clients[n] = c
		if err := c.refillTokens(); err != nil { // at login, ahead of need
			return err
		}
		if n != "alice" {
			if err := c.publishKeyPackage(ctx); err != nil {
				return err
			}
		}
	}
	alice, bob, carol := clients["alice"], clients["bob"], clients["carol"]

	// 1. Alice creates the group.
	if err := alice.createGroup(ctx); err != nil {
		return err
	}
	t.say(alice.group.Epoch(), "alice creates group %x", alice.group.GroupID()[:6])

	// 2. Alice adds the other named clients from their KeyPackages.
	var kps []*mls.KeyPackage
	for _, n := range names[1:] {
		got, err := alice.tr.FetchKeyPackages(ctx, []byte(n))
		if err != nil {
			return err
		}
		kps = append(kps, got...)
	}
	if _, err := alice.commit(ctx, &mls.CommitOptions{Add: kps}); err != nil {
		return err
	}
	for i, n := range names[1:] {
		ref, err := kps[i].Ref()
		if err != nil {
			return err
		}
		if err := clients[n].joinFromWelcome(ctx, ref); err != nil {
			return fmt.Errorf("%s joining: %w", n, err)
		}
	}
	t.say(alice.group.Epoch(), "alice adds %s; they join from the Welcome (%d members)", strings.Join(names[1:], ", "), alice.group.MemberCount())
	t.note("each join deleted the KeyPackage private key in the same transaction that saved the group")
	if err := refillAll(clients); err != nil {
		return err
	}
	t.note("each client's background job fetched %d Privacy Pass tokens bound to the group, blinded, ahead of need", walletBatch)

	// 3. Offline members, for size: their KeyPackages are added in batches.
	if extra := members - len(names); extra > 0 {
		if err := addOffline(ctx, t, alice, clients, extra); err != nil {
			return err
		}
		t.say(alice.group.Epoch(), "alice adds %d offline members (%d members)", extra, alice.group.MemberCount())
	}

	// 4. Everyone chats through sealed envelopes.
	for _, n := range names {
		if err := clients[n].send(ctx, fmt.Sprintf("hello from %s", n)); err != nil {
			return err
		}
	}
	if err := receiveAll(ctx, clients); err != nil {
		return err
	}
	t.say(bob.group.Epoch(), "everyone says hello; bob reads:")
	for _, line := range bob.inbox {
		t.note("  %s", line)
	}
	bob.inbox = nil
	t.note("the server saw %d sealed envelopes (%d bytes): group ID, epoch, a spent token; no sender", ds.envelopes, ds.envelopeBytes)

	// 5. Bob updates his keys: post-compromise security.
	before, _ := bob.group.Export("chat/demo", nil, 8)
	if _, err := bob.commit(ctx, &mls.CommitOptions{ForcePath: true}); err != nil {
		return err
	}
	if err := receiveAll(ctx, clients); err != nil {
		return err
	}
	after, _ := bob.group.Export("chat/demo", nil, 8)
	t.say(bob.group.Epoch(), "bob commits a fresh UpdatePath (post-compromise security): exporter %x -> %x", before, after)

	// 6. Alice removes Carol; Carol can no longer read.
	if _, err := alice.commit(ctx, &mls.CommitOptions{Remove: []mls.LeafIndex{carol.group.OwnLeafIndex()}}); err != nil {
		return err
	}
	if err := receiveAll(ctx, clients); err != nil {
		return err
	}
	t.say(alice.group.Epoch(), "alice removes carol (%d members); carol is active: %v", alice.group.MemberCount(), carol.group.Active())
	tag, err := alice.keyViewTag()
	if err != nil {
		return err
	}
	secret, err := alice.group.EncryptApplication([]byte("carol must not read this"), tag)
	if err != nil {
		return err
	}
	if _, err := carol.group.Process(secret); err != nil {
		t.note("carol tries to read alice's next message: %v", err)
	} else {
		return fmt.Errorf("carol read a message sent after her removal")
	}
	if _, err := carol.store.LoadGroupRecords(ctx, carol.group.GroupID()); err != nil {
		t.note("carol's stored group state is gone: %v", err)
	}
	delete(clients, "carol")
	if err := alice.tr.Send(ctx, alice.group.GroupID(), secret); err != nil {
		return err
	}
	if err := receiveAll(ctx, clients); err != nil {
		return err
	}
	t.note("bob reads it: %s", strings.Join(bob.inbox, "; "))
	bob.inbox = nil

	// 7. Bob's new laptop joins by external commit from the published
	// GroupInfo.
	laptopStore, err := openStore(dbDir, "bob-laptop")
	if err != nil {
		return err
	}
	laptop, err := newClient(ds, cs, "bob", laptopStore)
	if err != nil {
		return err
	}
	laptop.name = "bob-laptop"
	giMsg, err := mls.ParseMessage(ds.groupInfo(alice.group.GroupID()))
	if err != nil {
		return err
	}
	g, commit, err := mls.JoinExternal(giMsg, laptop.cred, laptop.sig, nil, laptop.cfg)
	if err != nil {
		return fmt.Errorf("external join: %w", err)
	}
	ds.subscribe(g.GroupID(), laptop.name)
	if err := laptop.tr.Send(ctx, g.GroupID(), commit); err != nil {
		return err
	}
	laptop.group = g
	if err := laptop.save(ctx, nil); err != nil {
		return err
	}
	clients[laptop.name] = laptop
	if err := receiveAll(ctx, clients); err != nil {
		return err
	}
	t.say(laptop.group.Epoch(), "bob's laptop joins by external commit (%d members)", laptop.group.MemberCount())

	// 8. Bob's phone restarts: it reloads its state from the database.
	if err := bob.reload(ctx); err != nil {
		return err
	}
	if err := alice.send(ctx, "welcome, laptop"); err != nil {
		return err
	}
	if err := receiveAll(ctx, clients); err != nil {
		return err
	}
	t.say(bob.group.Epoch(), "bob's phone restarts from its database and reads: %s", strings.Join(bob.inbox, "; "))
	t.say(laptop.group.Epoch(), "bob's laptop reads: %s", strings.Join(laptop.inbox, "; "))

	// 9. Everyone agrees.
	auth := alice.group.EpochAuthenticator()
	for _, c := range clients {
		if string(c.group.EpochAuthenticator()) != string(auth) {
			return fmt.Errorf("%s disagrees on the epoch authenticator", c.name)
		}
	}
	t.say(alice.group.Epoch(), "all %d online clients agree on epoch authenticator %x…", len(clients), auth[:8])
	linked, total := ds.linkedEnvelopes(ds.truth)
	t.note("%d of %d sealed envelopes directly followed a token issuance to their sender; every member's key-view tag matched", linked, total)
	fmt.Fprintf(w, "\ndone in %v\n", time.Since(t.start).Round(time.Millisecond))
	return nil
}

// receiveAll lets every client process its inbox.
func receiveAll(ctx context.Context, clients map[string]*client) error {
	for _, c := range clients {
		if !c.group.Active() {
			continue
		}
		if err := c.receive(ctx); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return refillAll(clients) // the background jobs run while receiving, not sending
}

// addOffline adds n members who never come online: their KeyPackages are
// made here, and Alice adds them in commits of up to 500.
func addOffline(ctx context.Context, t *transcript, alice *client, clients map[string]*client, n int) error {
	const batch = 500
	done := 0
	for done < n {
		k := min(batch, n-done)
		var kps []*mls.KeyPackage
		for i := range k {
			name := fmt.Sprintf("member-%05d", done+i+5)
			sig, err := alice.cs.GenerateSignatureKey()
			if err != nil {
				return err
			}
			kp, err := mls.GenerateKeyPackage(alice.cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}, sig, nil)
			if err != nil {
				return err
			}
			kps = append(kps, kp.KeyPackage)
		}
		if _, err := alice.commit(ctx, &mls.CommitOptions{Add: kps}); err != nil {
			return err
		}
		if err := receiveAll(ctx, clients); err != nil {
			return err
		}
		done += k
		progress(t.w, "adding offline members", done, n)
	}
	return nil
}
