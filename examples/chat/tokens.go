package main

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// Token handling that does not link a sender to its envelopes.
//
// A Privacy Pass token is bound to one group when it is made (the
// challenge's redemption context is derived from the group ID, blinded
// from the issuer), so a client keeps a small wallet of tokens per group.
// It fills the wallet ahead of need, in fixed-size batches, from a
// background job that runs at times of its own (here: once members have
// joined, and while processing incoming messages), never on the sending
// path: [transport.Send] spends a token from the wallet and never talks to
// the issuer. Were it to fetch right before sending, the server would see
// "alice fetched a token" followed by "an envelope arrived" and link the
// two.
//
// The issuer still learns, from how often an account refills, roughly how
// many envelopes it sends. A client that wants to hide that too fetches
// the same number of tokens at every refill time whether it needs them or
// not.

const (
	// walletBatch is how many tokens a refill fetches for a group.
	walletBatch = 8
	// walletLow is the level below which the background job refills.
	walletLow = 3
)

var errNoToken = errors.New("chat: no token for this group yet; the background job will fetch some")

// wallet is a client's tokens, by group, and its checked view of the
// issuer.
type wallet struct {
	pp      *sealedsender.PrivacyPassClient
	byGroup map[string][][]byte
	// next is the ID of the next group this client will create, drawn
	// ahead so that the background job can fetch its tokens before the
	// group exists: otherwise the creator's first commit would follow its
	// issuance directly.
	next []byte
}

// nextGroupID returns the ID of the next group the client creates.
func (c *client) nextGroupID() []byte {
	if c.wallet.next == nil {
		c.wallet.next = make([]byte, 32)
		rand.Read(c.wallet.next)
	}
	return c.wallet.next
}

// privacyPass returns the client's Privacy Pass client, checking the
// published directory on first use: keys for unexpected periods are
// refused (sealedsender.ErrUnexpectedKey).
func (c *client) privacyPass() (*sealedsender.PrivacyPassClient, error) {
	if c.wallet.pp == nil {
		dir, err := sealedsender.ParseKeyDirectory(c.tr.ds.keyDirectory())
		if err != nil {
			return nil, err
		}
		pp, err := sealedsender.NewPrivacyPassClient(dir, c.tr.ds.challenge(), nil)
		if err != nil {
			return nil, err
		}
		c.wallet.pp = pp
	}
	return c.wallet.pp, nil
}

// refillTokens is the background job: for the client's group (or the
// group it will create next), if the wallet is low, it fetches a batch of
// tokens bound to the group, one RFC 9578 TokenRequest each, while logged
// in as the client.
func (c *client) refillTokens() error {
	groupID := c.nextGroupID()
	if c.group != nil {
		if !c.group.Active() {
			return nil
		}
		groupID = c.group.GroupID()
	}
	if c.wallet.byGroup == nil {
		c.wallet.byGroup = map[string][][]byte{}
	}
	gid := string(groupID)
	if len(c.wallet.byGroup[gid]) >= walletLow {
		return nil
	}
	pp, err := c.privacyPass()
	if err != nil {
		return err
	}
	for range walletBatch {
		pending, req, err := pp.Request(pp.Challenge().ForGroup(groupID))
		if err != nil {
			return err
		}
		resp, err := c.tr.ds.issueTokens(c.name, req)
		if err != nil {
			return err
		}
		tok, err := pending.Finalize(resp)
		if err != nil {
			return err
		}
		c.wallet.byGroup[gid] = append(c.wallet.byGroup[gid], tok)
	}
	return nil
}

// token spends a token of the wallet for groupID. It never fetches.
func (c *client) token(groupID []byte) ([]byte, error) {
	toks := c.wallet.byGroup[string(groupID)]
	if len(toks) == 0 {
		return nil, errNoToken
	}
	c.wallet.byGroup[string(groupID)] = toks[1:]
	return toks[0], nil
}

// keyViewTag returns the tag that lets the other members compare the
// issuer keys and challenge this client was given with their own; it
// travels as the authenticated data of application messages.
func (c *client) keyViewTag() ([]byte, error) {
	pp, err := c.privacyPass()
	if err != nil {
		return nil, err
	}
	return pp.View().Tag(c.group)
}

// checkKeyView compares a received message's tag with this client's view:
// a mismatch means the server gave the sender or this client keys the
// other was not given, to recognize its tokens.
func (c *client) checkKeyView(res *mls.Processed) error {
	if res.ApplicationData == nil || res.Epoch != c.group.Epoch() {
		return nil
	}
	pp, err := c.privacyPass()
	if err != nil {
		return err
	}
	if err := pp.View().Check(c.group, res.AuthenticatedData); err != nil {
		return fmt.Errorf("message from leaf %d: %w", res.Sender.Index, err)
	}
	return nil
}

// refillAll runs every online client's background job.
func refillAll(clients map[string]*client) error {
	for _, c := range clients {
		if err := c.refillTokens(); err != nil {
			return fmt.Errorf("%s refilling tokens: %w", c.name, err)
		}
	}
	return nil
}

// linkedEnvelopes counts the sealed envelopes that the server received
// right after issuing tokens to their sender: the timing link that
// fetching ahead of need avoids. It uses the clients' ground truth of who
// sent what, which the server does not have.
func (ds *deliveryService) linkedEnvelopes(sentBy map[[32]byte]string) (linked, total int) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	last := ""
	for _, e := range ds.events {
		if e.issuedTo != "" {
			last = e.issuedTo
			continue
		}
		total++
		if sender := sentBy[e.envelope]; sender != "" && sender == last {
			linked++
		}
		last = ""
	}
	return linked, total
}

// dsEvent is one event of the delivery service's log: tokens issued to an
// account, or an envelope (by digest) accepted.
type dsEvent struct {
	issuedTo string
	envelope [32]byte
}

func envelopeDigest(env []byte) [32]byte { return sha256.Sum256(env) }
