package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// deliveryService is MicroChat's server, in process. It stores published
// KeyPackages and GroupInfos, issues Privacy Pass tokens, accepts sealed
// envelopes (checking and spending their tokens, never learning their
// sender) and fans messages out to the group's members. It sees only
// serialized bytes. For each epoch it accepts one commit: the first.
type deliveryService struct {
	mu          sync.Mutex
	issuer      *sealedsender.PrivacyPassIssuer
	server      *sealedsender.Server
	keyDir      []byte
	keyPackages map[string][][]byte
	welcomes    map[string][]byte
	groups      map[string]*dsGroup
	// stats of what the server saw.
	envelopes, envelopeBytes int
	events                   []dsEvent
	// truth records who sent each envelope, for the transcript's count of
	// linked envelopes only: a real server has no such record.
	truth map[[32]byte]string
}

// verifyLimiter caps the token verifications the server spends on one
// group (a real server would reset the counts each period, and also limit
// per connection before parsing). It only sees tokens that passed the
// cheap checks: right size, type, group and key.
type verifyLimiter struct {
	mu       sync.Mutex
	perGroup int
	counts   map[string]int
}

func (l *verifyLimiter) allow(groupID []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[string(groupID)] >= l.perGroup {
		return errors.New("ds: too many token verifications for this group")
	}
	l.counts[string(groupID)]++
	return nil
}

// tokenStore is where the delivery service keeps spent tokens and issuance
// quotas: a database every server process shares (examples/store), so that
// a restart or a second process cannot accept a spent token again.
type tokenStore interface {
	sealedsender.SpentStore
	sealedsender.QuotaStore
}

type dsGroup struct {
	committed map[uint64][]byte // epoch -> the commit accepted for it
	delivered map[[32]byte]bool // messages fanned out: a resend is delivered once
	groupInfo []byte
	inboxes   map[string][][]byte
}

var errStaleCommit = errors.New("ds: a commit for this epoch was already accepted")

// newDeliveryService starts the delivery service, which records spent
// tokens and quotas in the SQL database tokens (shared by all its server
// processes in a real deployment).
func newDeliveryService(tokens tokenStore) (*deliveryService, error) {
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	challenge := &sealedsender.TokenChallenge{
		TokenType:  sealedsender.TokenTypeVOPRFP384,
		IssuerName: "tokens.microchat.example",
		OriginInfo: "delivery.microchat.example",
	}
	limiter := &verifyLimiter{perGroup: 10000, counts: map[string]int{}}
	issuer, err := sealedsender.NewPrivacyPassIssuer(master, challenge, &sealedsender.IssuerConfig{
		Spent: tokens, Quotas: tokens,
		BeforeVerify: limiter.allow, // forged tokens cost a VOPRF evaluation each
	})
	if err != nil {
		return nil, err
	}
	dir, err := issuer.Keys()
	if err != nil {
		return nil, err
	}
	keyDir, err := dir.Bytes()
	if err != nil {
		return nil, err
	}
	return &deliveryService{
		issuer:      issuer,
		server:      sealedsender.NewServer(issuer),
		keyDir:      keyDir,
		keyPackages: map[string][][]byte{},
		welcomes:    map[string][]byte{},
		groups:      map[string]*dsGroup{},
		truth:       map[[32]byte]string{},
	}, nil
}

// keyDirectory returns the published issuer directory (RFC 9578, Section
// 4, JSON), as served at /.well-known/private-token-issuer-directory.
func (ds *deliveryService) keyDirectory() []byte { return ds.keyDir }

// challenge returns the issuer's base TokenChallenge (RFC 9577).
func (ds *deliveryService) challenge() *sealedsender.TokenChallenge { return ds.issuer.Challenge() }

func (ds *deliveryService) group(groupID []byte) *dsGroup {
	k := string(groupID)
	g := ds.groups[k]
	if g == nil {
		g = &dsGroup{committed: map[uint64][]byte{}, inboxes: map[string][][]byte{}}
		ds.groups[k] = g
	}
	return g
}

// publishKeyPackage stores a client's KeyPackage under its identity.
func (ds *deliveryService) publishKeyPackage(identity string, kp []byte) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.keyPackages[identity] = append(ds.keyPackages[identity], kp)
}

// fetchKeyPackage hands out one KeyPackage of identity, once.
func (ds *deliveryService) fetchKeyPackage(identity string) ([]byte, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	kps := ds.keyPackages[identity]
	if len(kps) == 0 {
		return nil, fmt.Errorf("ds: no KeyPackage for %q", identity)
	}
	ds.keyPackages[identity] = kps[1:]
	return kps[0], nil
}

// issueTokens answers a Privacy Pass batch request from a logged-in
// account. The issuer sees only blinded values.
func (ds *deliveryService) issueTokens(account string, request []byte) ([]byte, error) {
	resp, err := ds.issuer.Issue(account, request)
	if err == nil {
		ds.mu.Lock()
		ds.events = append(ds.events, dsEvent{issuedTo: account})
		ds.mu.Unlock()
	}
	return resp, err
}

// subscribe registers a client's inbox for a group.
func (ds *deliveryService) subscribe(groupID []byte, client string) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	g := ds.group(groupID)
	if _, ok := g.inboxes[client]; !ok {
		g.inboxes[client] = nil
	}
}

// submitSealed accepts a sealed envelope: it redeems the token, routes by
// group ID, and enforces one commit per epoch. It learns no sender.
func (ds *deliveryService) submitSealed(envelope []byte) error {
	d, err := ds.server.Accept(envelope)
	if err != nil {
		return err
	}
	m, err := mls.ParseMessage(d.Message)
	if err != nil {
		return err
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.envelopes++
	ds.envelopeBytes += len(envelope)
	ds.events = append(ds.events, dsEvent{envelope: envelopeDigest(envelope)})
	return ds.fanOut(d.GroupID, d.Epoch, m.PrivateMessage.ContentType == mls.ContentTypeCommit, d.Message)
}

// submitPublic accepts a PublicMessage, such as an external commit, from
// an authenticated connection.
func (ds *deliveryService) submitPublic(msg []byte) error {
	m, err := mls.ParseMessage(msg)
	if err != nil {
		return err
	}
	if m.PublicMessage == nil {
		return errors.New("ds: not a PublicMessage")
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.fanOut(m.GroupID(), m.Epoch(), m.PublicMessage.Content.ContentType == mls.ContentTypeCommit, msg)
}

func (ds *deliveryService) fanOut(groupID []byte, epoch uint64, commit bool, msg []byte) error {
	g := ds.group(groupID)
	if commit {
		if g.committed[epoch] != nil {
			return errStaleCommit
		}
		g.committed[epoch] = msg
	}
	if g.delivered == nil {
		g.delivered = map[[32]byte]bool{}
	}
	h := sha256.Sum256(msg)
	if g.delivered[h] {
		return nil // sent again after a crash (mls.Transport.Send)
	}
	g.delivered[h] = true
	for k := range g.inboxes {
		g.inboxes[k] = append(g.inboxes[k], msg)
	}
	return nil
}

// acceptedCommit returns the commit the delivery service accepted for an
// epoch of a group, or nil: what a client asks after a crash to finish a
// commit it stored (mls.Group.RecoveredCommit).
func (ds *deliveryService) acceptedCommit(groupID []byte, epoch uint64) *mls.MLSMessage {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	m, err := mls.ParseMessage(ds.group(groupID).committed[epoch])
	if err != nil {
		return nil
	}
	return m
}

// fetch returns and clears a client's inbox for a group.
func (ds *deliveryService) fetch(groupID []byte, client string) [][]byte {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	g := ds.group(groupID)
	msgs := g.inboxes[client]
	g.inboxes[client] = nil
	return msgs
}

// postWelcome stores a Welcome for the KeyPackage it names.
func (ds *deliveryService) postWelcome(ref []byte, welcome []byte) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.welcomes[hex.EncodeToString(ref)] = welcome
}

// fetchWelcome returns the Welcome for a KeyPackage, once.
func (ds *deliveryService) fetchWelcome(ref []byte) ([]byte, bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	k := hex.EncodeToString(ref)
	w, ok := ds.welcomes[k]
	delete(ds.welcomes, k)
	return w, ok
}

func (ds *deliveryService) publishGroupInfo(groupID, gi []byte) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.group(groupID).groupInfo = gi
}

func (ds *deliveryService) groupInfo(groupID []byte) []byte {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.group(groupID).groupInfo
}

// transport is a client's side of the delivery service: the
// [mls.Transport] the application implements. Everything crosses it as
// bytes; private messages travel in sealed envelopes paid for with
// Privacy Pass tokens.
type transport struct {
	ds     *deliveryService
	client *client
}

var _ mls.Transport = (*transport)(nil)

func (t *transport) Send(ctx context.Context, groupID []byte, msg *mls.MLSMessage) error {
	data, err := msg.Bytes()
	if err != nil {
		return err
	}
	t.client.sent[sha256.Sum256(data)] = true
	var sendErr error
	if msg.WireFormat == mls.WireFormatPrivateMessage {
		token, err := t.client.token(groupID) // never fetches: see tokens.go
		if err != nil {
			return err
		}
		env, err := sealedsender.Seal(sealedsender.SchemePrivacyPass, token, data, nil)
		if err != nil {
			return err
		}
		t.ds.mu.Lock()
		t.ds.truth[envelopeDigest(env)] = t.client.name
		t.ds.mu.Unlock()
		sendErr = t.ds.submitSealed(env)
	} else {
		sendErr = t.ds.submitPublic(data)
	}
	if errors.Is(sendErr, errStaleCommit) {
		return fmt.Errorf("%w: %w", mls.ErrConflict, sendErr)
	}
	return sendErr
}

func (t *transport) SendWelcome(ctx context.Context, welcome *mls.MLSMessage) error {
	data, err := welcome.Bytes()
	if err != nil {
		return err
	}
	for _, s := range welcome.Welcome.Secrets {
		t.ds.postWelcome(s.NewMember, data)
	}
	return nil
}

func (t *transport) FetchKeyPackages(ctx context.Context, identity []byte) ([]*mls.KeyPackage, error) {
	data, err := t.ds.fetchKeyPackage(string(identity))
	if err != nil {
		return nil, err
	}
	m, err := mls.ParseMessage(data)
	if err != nil {
		return nil, err
	}
	if m.KeyPackage == nil {
		return nil, errors.New("ds: not a KeyPackage")
	}
	return []*mls.KeyPackage{m.KeyPackage}, nil
}

func (t *transport) PublishGroupInfo(ctx context.Context, groupID []byte, gi *mls.MLSMessage) error {
	data, err := gi.Bytes()
	if err != nil {
		return err
	}
	t.ds.publishGroupInfo(groupID, data)
	return nil
}
