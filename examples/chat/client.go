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
	name     string
	cs       mls.CipherSuite
	cred     mls.Credential
	sig      *mls.SignaturePrivateKey
	store    clientStore
	tr       *transport
	cfg      *mls.Config
	group    *mls.Group
	revision uint64
	wallet   wallet
	sent     map[[32]byte]bool
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

// save persists the group state, with what the step consumed.
func (c *client) save(ctx context.Context, consumed *mls.Consumed) error {
	state, err := c.group.MarshalState()
	if err != nil {
		return err
	}
	rev, err := c.store.SaveGroupState(ctx, c.group.GroupID(), c.group.Epoch(), state, c.revision, consumed)
	if err != nil {
		return err
	}
	c.revision = rev
	return nil
}

// reload drops the in-memory group and loads it from the store, as after
// a restart.
func (c *client) reload(ctx context.Context) error {
	sg, err := c.store.LoadGroupState(ctx, c.group.GroupID())
	if err != nil {
		return err
	}
	g, err := mls.LoadGroup(sg.State, c.cfg)
	if err != nil {
		return err
	}
	c.group, c.revision = g, sg.Revision
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
	if err := c.tr.Send(ctx, c.group.GroupID(), pc.Commit); err != nil {
		return nil, err // another commit won; process it instead
	}
	if err := c.group.MergePendingCommit(pc); err != nil {
		return nil, err
	}
	if pc.Welcome != nil {
		if err := c.tr.SendWelcome(ctx, pc.Welcome); err != nil {
			return nil, err
		}
	}
	if err := c.tr.PublishGroupInfo(ctx, c.group.GroupID(), pc.GroupInfo); err != nil {
		return nil, err
	}
	return pc, c.save(ctx, nil)
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
	if err := c.tr.Send(ctx, c.group.GroupID(), m); err != nil {
		return err
	}
	return c.save(ctx, nil)
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
			return c.store.DeleteGroupState(ctx, c.group.GroupID(), c.revision)
		}
	case res.ApplicationData != nil:
		c.inbox = append(c.inbox, fmt.Sprintf("%s (leaf %d): %q", c.memberName(res.Sender.Index), res.Sender.Index, res.ApplicationData))
	}
	return c.save(ctx, nil)
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
