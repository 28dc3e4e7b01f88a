package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/microchat/e2ee/mls"
)

// clientStore is what a client persists to: its group states and its
// KeyPackage private keys, in one database so that a join deletes the
// KeyPackage key in the same transaction that saves the group.
type clientStore interface {
	mls.GroupStore
	mls.KeyStore
}

// client is one MicroChat device: an identity, a signature key, a store,
// and its view of the group.
type client struct {
	name   string
	cs     mls.CipherSuite
	cred   mls.Credential
	sig    *mls.SignaturePrivateKey
	store  clientStore
	tr     *transport
	cfg    *mls.Config
	group  *mls.Group
	wallet wallet
	sent   map[[32]byte]bool
	// log collects what the client read, for the transcript.
	inbox []string
}

func newClient(ds *deliveryService, cs mls.CipherSuite, name string, st clientStore) (*client, error) {
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		return nil, err
	}
	c := &client{
		name:  name,
		cs:    cs,
		cred:  mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)},
		sig:   sig,
		store: st,
		sent:  map[[32]byte]bool{},
		// Handshake messages go out as PrivateMessages, so that they can
		// travel sealed too.
		cfg: &mls.Config{Handshake: mls.HandshakePrivate, PaddingBlock: 64},
	}
	c.tr = &transport{ds: ds, client: c}
	return c, nil
}

// publishKeyPackage creates a KeyPackage, keeps its private keys in the
// store and publishes it.
func (c *client) publishKeyPackage(ctx context.Context) error {
	kp, err := mls.GenerateKeyPackage(c.cs, c.cred, c.sig, nil)
	if err != nil {
		return err
	}
	if err := c.store.PutKeyPackage(ctx, kp); err != nil {
		return err
	}
	data, err := (&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp.KeyPackage}).Bytes()
	if err != nil {
		return err
	}
	c.tr.ds.publishKeyPackage(c.name, data)
	return nil
}

// save persists what changed in the group (after a message, a few
// secret-tree entries), with what the step consumed and the client's own
// records, in one transaction (mls package documentation, "Persistence").
func (c *client) save(ctx context.Context, consumed *mls.Consumed, app ...mls.Record) error {
	return mls.SaveGroup(ctx, c.store, c.group, &mls.SaveOptions{Consumed: consumed, App: app})
}

// reload drops the in-memory group and opens it from the store, as after
// a restart, and finishes what a crash interrupted: a stored commit (merged
// if the delivery service accepted it, dropped otherwise) and messages
// saved to the outbox but maybe not sent.
func (c *client) reload(ctx context.Context) error {
	g, err := mls.OpenGroup(ctx, c.store, c.group.GroupID(), c.cfg)
	if err != nil {
		return err
	}
	c.group = g
	if pc := g.RecoveredCommit(); pc != nil {
		if err := c.finishCommit(ctx, pc, c.tr.Send(ctx, g.GroupID(), pc.Commit)); err != nil {
			return err
		}
	}
	recs, err := mls.LoadAppRecords(ctx, c.store, g.GroupID())
	if err != nil {
		return err
	}
	for _, r := range recs {
		if string(r.Key[:min(len(r.Key), 7)]) != "outbox/" {
			continue
		}
		m, err := mls.ParseMessage(r.Value)
		if err == nil {
			err = c.tr.Send(ctx, g.GroupID(), m) // the same bytes again: no key reused
		}
		if err == nil {
			err = c.save(ctx, nil, mls.Record{Key: r.Key})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *client) createGroup(ctx context.Context) error {
	// The group ID was drawn ahead, so that tokens for it are already in
	// the wallet (tokens.go).
	g, err := mls.NewGroup(c.cs, c.cred, c.sig, &mls.GroupOptions{GroupID: c.nextGroupID()}, c.cfg)
	if err != nil {
		return err
	}
	c.group = g
	c.tr.ds.subscribe(g.GroupID(), c.name)
	return c.save(ctx, nil)
}

// joinFromWelcome looks for a Welcome addressed to one of the client's
// KeyPackages and joins with it.
func (c *client) joinFromWelcome(ctx context.Context, kpRef mls.KeyPackageRef) error {
	data, ok := c.tr.ds.fetchWelcome(kpRef)
	if !ok {
		return errors.New("no Welcome for this client")
	}
	w, err := mls.ParseMessage(data)
	if err != nil {
		return err
	}
	g, consumed, err := mls.JoinWithStore(ctx, w, c.store, nil, c.cfg)
	if err != nil {
		return err
	}
	c.group = g
	c.tr.ds.subscribe(g.GroupID(), c.name)
	return c.save(ctx, consumed)
}

// commit creates a commit, sends it, and merges it only once the delivery
// service has accepted it; then it sends the Welcome and publishes the new
// GroupInfo for external joiners.
func (c *client) commit(ctx context.Context, opts *mls.CommitOptions) (*mls.PendingCommit, error) {
	opts.GroupInfo, opts.ExternalPub = true, true
	pc, err := c.group.Commit(opts)
	if err != nil {
		return nil, err
	}
	// Store the commit before sending it: after a crash, reload finishes
	// it as the delivery service decided.
	if err := mls.SavePendingCommit(ctx, c.store, c.group, pc, nil); err != nil {
		return nil, err
	}
	return pc, c.finishCommit(ctx, pc, c.tr.Send(ctx, c.group.GroupID(), pc.Commit))
}

// finishCommit completes a stored commit once the delivery service
// answered sendErr: accepted (nil, or a conflict with this very commit
// when it is sent again after a crash), it sends the Welcome and GroupInfo
// and only then merges and saves, so that a crash before the save sends
// them again; refused, the commit is dropped.
func (c *client) finishCommit(ctx context.Context, pc *mls.PendingCommit, sendErr error) error {
	if errors.Is(sendErr, mls.ErrConflict) && pc.Is(c.tr.ds.acceptedCommit(c.group.GroupID(), c.group.Epoch())) {
		sendErr = nil
	}
	if sendErr != nil {
		// Another commit won (process it: the save after merging it drops
		// this one), or the delivery service refused this one.
		if err := c.save(ctx, nil); err != nil {
			return err
		}
		return sendErr
	}
	if pc.Welcome != nil {
		if err := c.tr.SendWelcome(ctx, pc.Welcome); err != nil {
			return err
		}
	}
	if pc.GroupInfo != nil {
		if err := c.tr.PublishGroupInfo(ctx, c.group.GroupID(), pc.GroupInfo); err != nil {
			return err
		}
	}
	if err := c.group.MergePendingCommit(pc); err != nil {
		return err
	}
	return c.save(ctx, nil)
}

// send encrypts and sends an application message.
func (c *client) send(ctx context.Context, text string) error {
	tag, err := c.keyViewTag()
	if err != nil {
		return err
	}
	m, err := c.group.EncryptApplication([]byte(text), tag)
	if err != nil {
		return err
	}
	// Persist the advanced ratchet with the message in the outbox before
	// sending, so that a crash can neither reuse the key for another
	// message nor lose this one (reload sends it again).
	data, err := m.Bytes()
	if err != nil {
		return err
	}
	key := fmt.Appendf(nil, "outbox/%x", sha256.Sum256(data))
	if err := c.save(ctx, nil, mls.Record{Key: key, Value: data}); err != nil {
		return err
	}
	if err := c.tr.Send(ctx, c.group.GroupID(), m); err != nil {
		return err
	}
	return c.save(ctx, nil, mls.Record{Key: key})
}

// receive processes everything waiting in the client's inbox. It returns
// the first error, after processing what it could.
func (c *client) receive(ctx context.Context) error {
	var firstErr error
	for _, data := range c.tr.ds.fetch(c.group.GroupID(), c.name) {
		if c.sent[sha256.Sum256(data)] {
			continue // our own message, echoed by the delivery service
		}
		m, err := mls.ParseMessage(data)
		if err == nil {
			err = c.process(ctx, m)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (c *client) process(ctx context.Context, m *mls.MLSMessage) error {
	res, err := c.group.Process(m)
	if err != nil {
		return err
	}
	if err := c.checkKeyView(res); err != nil {
		return err
	}
	switch {
	case res.Commit != nil:
		if err := c.group.Merge(res.Commit); err != nil {
			return err
		}
		if res.Commit.SelfRemoved {
			c.inbox = append(c.inbox, "(removed from the group)")
			return c.store.DeleteGroup(ctx, c.group.GroupID(), c.storedRevision(ctx))
		}
	case res.ApplicationData != nil:
		c.inbox = append(c.inbox, fmt.Sprintf("%s (leaf %d): %q", c.memberName(res.Sender.Index), res.Sender.Index, res.ApplicationData))
	}
	return c.save(ctx, nil)
}

// storedRevision returns the revision of the client's stored group.
func (c *client) storedRevision(ctx context.Context) uint64 {
	sg, err := c.store.LoadGroupRecords(ctx, c.group.GroupID())
	if err != nil {
		return 0
	}
	return sg.Revision
}

// memberName returns the identity at a leaf of the client's group.
func (c *client) memberName(leaf uint32) string {
	for _, m := range c.group.Members() {
		if uint32(m.Index) == leaf {
			return string(m.Credential.Identity)
		}
	}
	return "?"
}
