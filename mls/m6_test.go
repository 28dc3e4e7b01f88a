package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
)

// Tests of the operations of RFC 9420 beyond the basic lifecycle: external
// joins and resync, external senders, PSKs, ReInit, branching, extension
// and capability checks, custom types and GREASE.

// forEachSuite runs f as a parallel subtest for every cipher suite.
func forEachSuite(t *testing.T, f func(t *testing.T, cs CipherSuite)) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			f(t, cs)
		})
	}
}

// m6Group builds a group of the named members with one commit by the first.
// kpOpts, if non-nil, gives each joiner's KeyPackage options.
func m6Group(t testing.TB, cs CipherSuite, gopts *GroupOptions, cfg *Config, kpOpts func(i int) *KeyPackageOptions, names ...string) []*member {
	return m6GroupJoining(t, cs, gopts, cfg, kpOpts, nil, names...)
}

// m6GroupJoining is m6Group where only the members whose index is in join
// (all if nil) process the Welcome; the others stay with a nil group.
func m6GroupJoining(t testing.TB, cs CipherSuite, gopts *GroupOptions, cfg *Config, kpOpts func(i int) *KeyPackageOptions, join []int, names ...string) []*member {
	t.Helper()
	ms := make([]*member, len(names))
	for i, n := range names {
		ms[i] = newMember(t, cs, n)
	}
	var err error
	if ms[0].g, err = NewGroup(cs, ms[0].cred, ms[0].sig, gopts, cfg); err != nil {
		t.Fatal(err)
	}
	if len(ms) == 1 {
		return ms
	}
	kps := make([]*KeyPackagePrivate, len(ms))
	var pubs []*KeyPackage
	for i := 1; i < len(ms); i++ {
		var o *KeyPackageOptions
		if kpOpts != nil {
			o = kpOpts(i)
		}
		if kps[i], err = GenerateKeyPackage(cs, ms[i].cred, ms[i].sig, o); err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, kps[i].KeyPackage)
	}
	pc, err := ms[0].g.Commit(&CommitOptions{Add: pubs})
	require.NoError(t, err)
	require.NoError(t, ms[0].g.MergePendingCommit(pc))
	w := transmit(t, pc.Welcome)
	for i := 1; i < len(ms); i++ {
		if join != nil && !slices.Contains(join, i) {
			continue
		}
		if ms[i].g, err = Join(w, kps[i], nil, cfg); err != nil {
			t.Fatalf("%s joining: %v", ms[i].name, err)
		}
	}
	return ms
}

// agree checks that the members with a group share the epoch, tree hash
// and epoch authenticator, and that the first can send to the others. It
// is a cheaper checkAgreement, for the slow cipher suites.
func agree(t testing.TB, ms []*member) {
	t.Helper()
	var live []*member
	for _, m := range ms {
		if m.g != nil && m.g.Active() {
			live = append(live, m)
		}
	}
	ref := live[0]
	for _, m := range live[1:] {
		if m.g.Epoch() != ref.g.Epoch() || !bytes.Equal(m.g.TreeHash(), ref.g.TreeHash()) ||
			!bytes.Equal(m.g.EpochAuthenticator(), ref.g.EpochAuthenticator()) {
			t.Fatalf("%s and %s disagree at epoch %d/%d", m.name, ref.name, m.g.Epoch(), ref.g.Epoch())
		}
	}
	text := []byte("hello from " + ref.name)
	msg, err := ref.g.EncryptApplication(text, nil)
	require.NoError(t, err)
	msg = transmit(t, msg)
	for _, m := range live[1:] {
		res, err := m.g.Process(msg)
		if err != nil || !bytes.Equal(res.ApplicationData, text) {
			t.Fatalf("%s reading %s: %v", m.name, ref.name, err)
		}
	}
}

// m6Snap is what must not change when a group rejects a message.
type m6Snap struct {
	epoch          uint64
	auth, treeHash []byte
	cached         int
	active         bool
}

func snap6(g *Group) m6Snap {
	return m6Snap{g.Epoch(), bytes.Clone(g.EpochAuthenticator()), bytes.Clone(g.TreeHash()), len(g.state.proposals), g.Active()}
}

func (s m6Snap) equal(o m6Snap) bool {
	return s.epoch == o.epoch && bytes.Equal(s.auth, o.auth) && bytes.Equal(s.treeHash, o.treeHash) && s.cached == o.cached && s.active == o.active
}

// matchable reports whether err is one callers can branch on.
func matchable(err error) bool {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return true
	}
	for _, e := range []error{ErrMalformed, ErrUnsupported, ErrInvalidSignature, ErrDecryption, ErrWrongGroup,
		ErrWrongEpoch, ErrNotFound, ErrKeyUsed, ErrTooFarAhead, ErrNotMember, ErrInactive, ErrReInitialized, ErrProposalCacheFull} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// mustReject processes msg at g after a wire round trip and checks that it
// is rejected with an error matching want (or any matchable error if want
// is nil) and leaves g unchanged.
func mustReject(t *testing.T, g *Group, msg *MLSMessage, want error, what string) {
	t.Helper()
	before := snap6(g)
	data, err := msg.Bytes()
	if err == nil {
		var m *MLSMessage
		if m, err = ParseMessage(data); err == nil {
			_, err = g.Process(m)
		}
	}
	require.Error(t, err, "%s: accepted", what)
	if !matchable(err) || (want != nil && !errors.Is(err, want)) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
	if !snap6(g).equal(before) {
		t.Fatalf("%s: rejected message changed the group", what)
	}
}

// isValidation reports whether err is a ValidationError for section.
func isValidation(err error, section string) bool {
	var ve *ValidationError
	return errors.As(err, &ve) && ve.Section == section
}

// rawProposal frames and signs p as a proposal of g's member without any
// of the sender-side checks, as a misbehaving member could.
func rawProposal(t testing.TB, g *Group, p *Proposal) *MLSMessage {
	t.Helper()
	c := g.framedContent(nil)
	c.ContentType = ContentTypeProposal
	c.Proposal = p
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: c}
	require.NoError(t, signContent(g.cs, g.sigPriv, ac, g.state.ctxBytes))
	pm, err := g.state.framer.protectPublic(ac)
	require.NoError(t, err)
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm}
}

// deliver processes msg at every member of to and merges it if it is a
// commit; it returns the staged commits seen.
func deliver(t testing.TB, msg *MLSMessage, to ...*member) []*StagedCommit {
	t.Helper()
	wireMsg := transmit(t, msg)
	var out []*StagedCommit
	for _, m := range to {
		res, err := m.g.Process(wireMsg)
		require.NoError(t, err, "%s processing", m.name)
		if res.Commit != nil {
			out = append(out, res.Commit)
			require.NoError(t, m.g.Merge(res.Commit))
		}
	}
	return out
}

// memoryPSKs is a PSKStore for tests.
type memoryPSKs struct {
	external   map[string][]byte
	resumption map[string][]byte
}

func newMemoryPSKs() *memoryPSKs {
	return &memoryPSKs{external: map[string][]byte{}, resumption: map[string][]byte{}}
}

func (s *memoryPSKs) ExternalPSK(id []byte) ([]byte, error) {
	if k, ok := s.external[string(id)]; ok {
		return k, nil
	}
	return nil, ErrNotFound
}

func (s *memoryPSKs) ResumptionPSK(groupID []byte, epoch uint64) ([]byte, error) {
	if k, ok := s.resumption[fmt.Sprintf("%x/%d", groupID, epoch)]; ok {
		return k, nil
	}
	return nil, ErrNotFound
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestExternalJoinAndResync(t *testing.T) {
	forEachSuite(t, testExternalJoinAndResync)
}

func testExternalJoinAndResync(t *testing.T, cs CipherSuite) {
	psks := newMemoryPSKs()
	psks.external["ext"] = randomBytes(32)
	cfg := &Config{PSKs: psks}
	ms := m6Group(t, cs, nil, cfg, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]

	// A GroupInfo without external_pub cannot be used.
	gi, err := alice.g.GroupInfo(nil)
	require.NoError(t, err)
	carol := newMember(t, cs, "carol")
	if _, _, err := JoinExternal(transmit(t, gi), carol.cred, carol.sig, nil, cfg); !errors.Is(err, ErrNotFound) {
		t.Fatalf("external join without external_pub: %v", err)
	}

	// Carol joins by external commit, injecting an external PSK.
	gi, err = alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	// A tampered external_pub or GroupInfo is refused.
	for _, ext := range []ExtensionType{ExtensionExternalPub, ExtensionRatchetTree} {
		bad := transmit(t, gi)
		for i := range bad.GroupInfo.Extensions {
			if e := &bad.GroupInfo.Extensions[i]; e.Type == ext {
				e.Data[len(e.Data)-1] ^= 1
			}
		}
		if _, _, err := JoinExternal(bad, carol.cred, carol.sig, nil, cfg); !matchable(err) {
			t.Fatalf("tampered GroupInfo extension %d: %v", ext, err)
		}
	}
	var commit *MLSMessage
	carol.g, commit, err = JoinExternal(transmit(t, gi), carol.cred, carol.sig,
		&ExternalJoinOptions{PSKs: []PreSharedKeyID{{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("ext")}}}, cfg)
	require.NoError(t, err, "external join")
	if commit.PublicMessage.Content.Sender.Type != SenderTypeNewMemberCommit {
		t.Fatal("external commit not sent as new_member_commit")
	}
	// A tampered ExternalInit is rejected without a trace.
	bad := transmit(t, commit)
	bad.PublicMessage.Content.Commit.Proposals[0].Proposal.ExternalInit.KEMOutput[0] ^= 1
	mustReject(t, bob.g, bad, nil, "tampered external commit")

	staged := deliver(t, commit, alice, bob)
	for _, sc := range staged {
		if !sc.ExternalJoin || len(sc.Added) != 1 || sc.Added[0] != carol.g.OwnLeafIndex() || len(sc.PSKs) != 1 {
			t.Fatalf("staged external commit: %+v", sc)
		}
	}
	ms = append(ms, carol)
	agree(t, ms)

	// Bob lost his state: he rejoins with a resync commit that removes his
	// old leaf, from a GroupInfo whose tree comes out of band.
	oldBob := bob.g.OwnLeafIndex()
	bob.g = nil
	gi, err = carol.g.GroupInfo(&GroupInfoOptions{RatchetTreeOutOfBand: true, ExternalPub: true})
	require.NoError(t, err)
	if _, _, err := JoinExternal(transmit(t, gi), bob.cred, bob.sig, nil, cfg); !errors.Is(err, ErrNotFound) {
		t.Fatalf("external join without the tree: %v", err)
	}
	bob.g, commit, err = JoinExternal(transmit(t, gi), bob.cred, bob.sig,
		&ExternalJoinOptions{Resync: true, RatchetTree: carol.g.RatchetTree()}, cfg)
	require.NoError(t, err, "resync")

	// A resync that removes someone else's leaf is rejected: re-sign the
	// commit with the Remove pointed at Alice.
	forged := transmit(t, commit)
	c := &forged.PublicMessage.Content
	c.Commit.Proposals[1].Proposal.Remove.Removed = alice.g.OwnLeafIndex()
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: *c, Auth: forged.PublicMessage.Auth}
	require.NoError(t, signContent(cs, bob.sig, ac, carol.g.state.ctxBytes))
	forged.PublicMessage.Auth = ac.Auth
	before := snap6(carol.g)
	if _, err := carol.g.Process(forged); !isValidation(err, "12.4.3.2") {
		t.Fatalf("resync removing another member: %v", err)
	}
	if !snap6(carol.g).equal(before) {
		t.Fatal("rejected resync changed the group")
	}

	staged = deliver(t, commit, alice, carol)
	for _, sc := range staged {
		if !slices.Equal(sc.Removed, []LeafIndex{oldBob}) || !sc.ExternalJoin {
			t.Fatalf("resync staged: removed %v", sc.Removed)
		}
	}
	if alice.g.MemberCount() != 3 {
		t.Fatalf("%d members after resync", alice.g.MemberCount())
	}
	agree(t, ms)
}

func TestExternalSenders(t *testing.T) {
	forEachSuite(t, testExternalSenders)
}

func testExternalSenders(t *testing.T, cs CipherSuite) {
	dsKey, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	data, err := MarshalExternalSenders([]ExternalSender{{SignatureKey: dsKey.PublicKey(), Credential: Credential{Type: CredentialBasic, Identity: []byte("server")}}})
	require.NoError(t, err)
	gopts := &GroupOptions{Extensions: []Extension{{Type: ExtensionExternalSenders, Data: data}}}
	// The members commit non-members' proposals (not the default).
	acceptAll := &Config{AcceptNonMemberProposal: func(*Proposal, Sender) error { return nil }}
	ms := m6Group(t, cs, gopts, acceptAll, nil, "alice", "bob", "carol")
	alice, bob, carol := ms[0], ms[1], ms[2]
	gid := alice.g.GroupID()
	ds := &ExternalSigner{Index: 0, Key: dsKey}

	// Malformed or unauthorized external proposals.
	if _, err := ds.Propose(gid, alice.g.Epoch(), &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{}}, nil); !isValidation(err, "12.1.8") {
		t.Fatalf("external Update accepted by the signer: %v", err)
	}
	remove := &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: carol.g.OwnLeafIndex()}}
	sign := func(key *SignaturePrivateKey, sender Sender, p *Proposal) *MLSMessage {
		m, err := signExternalContent(key, gid, alice.g.Epoch(), sender, p, nil)
		require.NoError(t, err)
		return m
	}
	leaf := *alice.g.state.tree.Leaf(0)
	mustReject(t, alice.g, sign(dsKey, Sender{Type: SenderTypeExternal}, &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}}), ErrMalformed, "external Update")
	mustReject(t, alice.g, sign(dsKey, Sender{Type: SenderTypeExternal}, &Proposal{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInitProposal{KEMOutput: []byte{1}}}), ErrMalformed, "external ExternalInit")
	mustReject(t, alice.g, sign(dsKey, Sender{Type: SenderTypeExternal, Index: 1}, remove), nil, "external sender index out of range")
	mustReject(t, alice.g, sign(alice.sig, Sender{Type: SenderTypeExternal}, remove), ErrInvalidSignature, "external proposal signed by another key")
	mustReject(t, alice.g, sign(dsKey, Sender{Type: SenderTypeNewMemberProposal}, remove), nil, "new_member_proposal Remove")
	wrongEpoch, err := ds.Propose(gid, alice.g.Epoch()+1, remove, nil)
	require.NoError(t, err)
	mustReject(t, alice.g, wrongEpoch, ErrWrongEpoch, "external proposal for a future epoch")

	// The server removes Carol; Alice commits its proposal.
	prop, err := ds.Propose(gid, alice.g.Epoch(), remove, []byte("inactive"))
	require.NoError(t, err)
	if prop.PublicMessage.MembershipTag != nil {
		t.Fatal("external proposal has a membership tag")
	}
	for _, m := range ms {
		res, err := m.g.Process(transmit(t, prop))
		require.NoError(t, err, "%s processing the external Remove", m.name)
		if res.Sender.Type != SenderTypeExternal || res.Proposal.Type != ProposalTypeRemove {
			t.Fatalf("external proposal seen as %+v", res.Sender)
		}
	}
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	if carol.g.Active() || alice.g.MemberCount() != 2 {
		t.Fatal("the external Remove did not remove carol")
	}

	// Dave asks to join with a new_member_proposal Add; Bob commits it.
	dave := newMember(t, cs, "dave")
	daveKP := dave.keyPackage(t, cs)
	prop, err = NewMemberProposal(daveKP, gid, bob.g.Epoch(), nil)
	require.NoError(t, err)
	for _, m := range []*member{alice, bob} {
		res, err := m.g.Process(transmit(t, prop))
		require.NoError(t, err, "%s processing the new member's Add", m.name)
		if res.Sender.Type != SenderTypeNewMemberProposal {
			t.Fatal("wrong sender type")
		}
	}
	pc, err = bob.g.Commit(nil)
	require.NoError(t, err)
	deliverCommit(t, bob, pc, []*member{alice, bob})
	if dave.g, err = Join(transmit(t, pc.Welcome), daveKP, nil, nil); err != nil {
		t.Fatal(err)
	}
	agree(t, []*member{alice, bob, dave})
}

func TestPSKs(t *testing.T) {
	forEachSuite(t, testPSKs)
}

func testPSKs(t *testing.T, cs CipherSuite) {
	shared := newMemoryPSKs()
	shared.external["team-key"] = randomBytes(32)
	// Alice alone also holds a PSK nobody else has.
	mine := newMemoryPSKs()
	mine.external = map[string][]byte{"team-key": shared.external["team-key"], "alice-only": randomBytes(32)}
	mine.resumption = shared.resumption
	alice := newMember(t, cs, "alice")
	bob, carol := newMember(t, cs, "bob"), newMember(t, cs, "carol")
	var err error
	if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, &Config{PSKs: mine}); err != nil {
		t.Fatal(err)
	}
	ext := PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("team-key")}

	// Alice adds Bob and Carol in a commit injecting the external PSK; the
	// Welcome names it and the joiners find it in their store.
	bobKP, carolKP := bob.keyPackage(t, cs), carol.keyPackage(t, cs)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{bobKP.KeyPackage, carolKP.KeyPackage}, PSKs: []PreSharedKeyID{ext}})
	require.NoError(t, err)
	require.NoError(t, alice.g.MergePendingCommit(pc))
	if _, err := Join(transmit(t, pc.Welcome), bobKP, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("join without the PSK: %v", err)
	}
	cfg := &Config{PSKs: shared}
	if bob.g, err = Join(transmit(t, pc.Welcome), bobKP, nil, cfg); err != nil {
		t.Fatal(err)
	}
	if carol.g, err = Join(transmit(t, pc.Welcome), carolKP, nil, cfg); err != nil {
		t.Fatal(err)
	}
	ms := []*member{alice, bob, carol}
	agree(t, ms)

	// A commit with a PSK Bob does not have is rejected without a trace.
	pc, err = alice.g.Commit(&CommitOptions{PSKs: []PreSharedKeyID{{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("alice-only")}}})
	require.NoError(t, err)
	mustReject(t, bob.g, pc.Commit, ErrNotFound, "commit with an unknown PSK")

	// Bob proposes the resumption PSK of an earlier epoch of this group
	// (epoch 1, where the group now is, advanced below), and Alice commits
	// it with the external PSK.
	pc, err = bob.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	deliverCommit(t, bob, pc, ms)
	res := PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageApplication, PSKGroupID: alice.g.GroupID(), PSKEpoch: 1}
	prop, err := bob.g.ProposePSK(res)
	require.NoError(t, err)
	deliver(t, prop, alice, carol)
	pc, err = alice.g.Commit(&CommitOptions{PSKs: []PreSharedKeyID{ext}})
	require.NoError(t, err)
	if len(pc.Staged().PSKs) != 2 {
		t.Fatalf("commit carries %d PSKs", len(pc.Staged().PSKs))
	}
	deliverCommit(t, alice, pc, ms)
	agree(t, ms)

	// The resumption PSK of a related group, which the members hold in
	// their store.
	other := m6Group(t, cs, nil, nil, nil, "other")[0]
	psk, err := other.g.ResumptionPSK(0)
	require.NoError(t, err)
	shared.resumption[fmt.Sprintf("%x/%d", other.g.GroupID(), 0)] = psk
	related := PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageApplication, PSKGroupID: other.g.GroupID(), PSKEpoch: 0}
	pc, err = carol.g.Commit(&CommitOptions{PSKs: []PreSharedKeyID{related}})
	require.NoError(t, err)
	deliverCommit(t, carol, pc, ms)
	agree(t, ms)
	if _, err := alice.g.ResumptionPSK(1000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resumption PSK of a future epoch: %v", err)
	}
}

func TestReInit(t *testing.T) {
	suites := hpke.CipherSuites()
	for i, cs := range suites {
		to := suites[(i+2)%len(suites)] // suite 1 goes to suite 3
		t.Run(fmt.Sprintf("%v-to-%v", cs, to), func(t *testing.T) {
			t.Parallel()
			testReInit(t, cs, to, i == 0)
		})
	}
}

// testReInit re-creates a group of suite cs in suite to; full adds the
// checks that do not depend on the suites.
func testReInit(t *testing.T, cs, to CipherSuite, full bool) {
	ms := m6Group(t, cs, nil, nil, nil, "alice", "bob", "carol")
	alice, bob, carol := ms[0], ms[1], ms[2]

	if full {
		// A ReInit must be committed alone: other proposals take
		// precedence.
		reinit, err := bob.g.ProposeReInit(ReInitProposal{CipherSuite: to})
		require.NoError(t, err)
		deliver(t, reinit, alice, carol)
		update, err := carol.g.ProposeUpdate()
		require.NoError(t, err)
		deliver(t, update, alice, bob)
		pc, err := alice.g.Commit(nil)
		require.NoError(t, err)
		if pc.Staged().ReInit != nil {
			t.Fatal("ReInit committed with other proposals")
		}
		deliverCommit(t, alice, pc, ms)
	}

	// Bob proposes again; Alice commits the ReInit alone.
	reinit, err := bob.g.ProposeReInit(ReInitProposal{CipherSuite: to, GroupID: []byte("the new group")})
	require.NoError(t, err)
	deliver(t, reinit, alice, carol)
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	if pc.Staged().ReInit == nil || pc.Commit.PublicMessage.Content.Commit.Path != nil {
		t.Fatal("ReInit not committed alone, without a path")
	}
	deliverCommit(t, alice, pc, ms)
	for _, m := range ms {
		if r := m.g.PendingReInit(); r == nil || r.CipherSuite != to {
			t.Fatalf("%s has no pending ReInit", m.name)
		}
	}
	if _, err := carol.g.EncryptApplication([]byte("x"), nil); !errors.Is(err, ErrReInitialized) {
		t.Fatalf("sending after ReInit: %v", err)
	}
	if _, err := carol.g.Commit(nil); !errors.Is(err, ErrReInitialized) {
		t.Fatalf("committing after ReInit: %v", err)
	}

	// Everybody makes keys for the new suite; Alice re-creates the group.
	next := make([]*member, len(ms))
	kps := make([]*KeyPackagePrivate, len(ms))
	for i, m := range ms {
		next[i] = newMember(t, to, m.name)
		kps[i] = next[i].keyPackage(t, to)
	}
	if _, _, err := alice.g.ReInit(&ReInitOptions{KeyPackages: []*KeyPackage{kps[1].KeyPackage}, Credential: &alice.cred, SignatureKey: next[0].sig}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReInit leaving a member behind: %v", err)
	}
	ng, welcome, err := alice.g.ReInit(&ReInitOptions{KeyPackages: []*KeyPackage{kps[1].KeyPackage, kps[2].KeyPackage}, Credential: &alice.cred, SignatureKey: next[0].sig})
	require.NoError(t, err, "ReInit")
	next[0].g = ng
	if ng.Epoch() != 1 || ng.CipherSuite() != to || !bytes.Equal(ng.GroupID(), []byte("the new group")) {
		t.Fatalf("new group: epoch %d, suite %v", ng.Epoch(), ng.CipherSuite())
	}
	w := transmit(t, welcome)
	if _, err := Join(w, kps[1], nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("joining a reinitialized group without the old one: %v", err)
	}
	if _, err := Join(w, kps[1], &JoinOptions{PreviousGroup: ng}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("joining with the wrong previous group: %v", err)
	}
	if full {
		// A new group that does not match the ReInit is refused.
		kp := next[1].keyPackage(t, to)
		_, bad, err := alice.g.resume(to, alice.cred, next[0].sig, &GroupOptions{GroupID: []byte("another group")}, &alice.g.cfg,
			[]*KeyPackage{kp.KeyPackage}, keyschedule.ResumptionPSKUsageReInit, false)
		require.NoError(t, err)
		if _, err := Join(transmit(t, bad), kp, &JoinOptions{PreviousGroup: bob.g}, nil); !isValidation(err, "11.2") {
			t.Fatalf("joining a group that does not match the ReInit: %v", err)
		}
	}
	for i := 1; i < len(ms); i++ {
		if next[i].g, err = Join(w, kps[i], &JoinOptions{PreviousGroup: ms[i].g}, nil); err != nil {
			t.Fatalf("%s joining the new group: %v", ms[i].name, err)
		}
	}
	agree(t, next)
}

func TestBranch(t *testing.T) {
	forEachSuite(t, testBranch)
}

func testBranch(t *testing.T, cs CipherSuite) {
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("m%d", i)
	}
	picked := []int{3, 7}
	// Only the members brought into the branch need their state.
	ms := m6GroupJoining(t, cs, nil, nil, nil, picked, names...)
	// A client outside the group cannot be brought into a branch.
	outsider := newMember(t, cs, "outsider")
	if _, _, err := ms[0].g.Branch(&BranchOptions{KeyPackages: []*KeyPackage{outsider.keyPackage(t, cs).KeyPackage}}); !isValidation(err, "11.3") {
		t.Fatalf("branch with an outsider: %v", err)
	}
	var kps []*KeyPackagePrivate
	var pubs []*KeyPackage
	for _, i := range picked {
		kp := ms[i].keyPackage(t, cs)
		kps = append(kps, kp)
		pubs = append(pubs, kp.KeyPackage)
	}
	sub, welcome, err := ms[0].g.Branch(&BranchOptions{KeyPackages: pubs})
	require.NoError(t, err)
	if sub.MemberCount() != 3 || sub.Epoch() != 1 || bytes.Equal(sub.GroupID(), ms[0].g.GroupID()) {
		t.Fatal("wrong subgroup")
	}
	subMembers := []*member{{name: "m0", g: sub}}
	w := transmit(t, welcome)
	if _, err := Join(w, kps[0], nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("joining a branch without the old group: %v", err)
	}
	for j, i := range picked {
		g, err := Join(w, kps[j], &JoinOptions{PreviousGroup: ms[i].g}, nil)
		require.NoError(t, err, "m%d joining the branch", i)
		subMembers = append(subMembers, &member{name: ms[i].name, g: g})
	}
	agree(t, subMembers)
	// A "branch" bringing in an outsider is refused by the members.
	if cs == hpke.CipherSuites()[0] {
		kp := ms[3].keyPackage(t, cs)
		_, bad, err := ms[0].g.resume(cs, ms[0].cred, ms[0].sig, nil, &ms[0].g.cfg,
			[]*KeyPackage{kp.KeyPackage, outsider.keyPackage(t, cs).KeyPackage}, keyschedule.ResumptionPSKUsageBranch, false)
		require.NoError(t, err)
		if _, err := Join(transmit(t, bad), kp, &JoinOptions{PreviousGroup: ms[3].g}, nil); !isValidation(err, "11.3") {
			t.Fatalf("joining a branch with an outsider: %v", err)
		}
	}
	// The old group goes on.
	pc, err := ms[3].g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	deliverCommit(t, ms[3], pc, ms)
	agree(t, ms)
}

// Custom types used in the tests.
const (
	testExtension ExtensionType = 0xff01
	testProposal  ProposalType  = 0xff02
)

func requiredCapabilities(t testing.TB, rc *RequiredCapabilities) Extension {
	t.Helper()
	data, err := wire.Marshal(rc.Marshal)
	require.NoError(t, err)
	return Extension{Type: ExtensionRequiredCapabilities, Data: data}
}

func TestGroupContextExtensionsAndCustomTypes(t *testing.T) {
	forEachSuite(t, testGroupContextExtensionsAndCustomTypes)
}

func testGroupContextExtensionsAndCustomTypes(t *testing.T, cs CipherSuite) {
	custom := &KeyPackageOptions{ExtensionTypes: []ExtensionType{testExtension}, ProposalTypes: []ProposalType{testProposal}}
	gopts := &GroupOptions{ExtensionTypes: custom.ExtensionTypes, ProposalTypes: custom.ProposalTypes}
	// Carol supports neither custom type.
	ms := m6Group(t, cs, gopts, nil, func(i int) *KeyPackageOptions {
		if i == 2 {
			return nil
		}
		return custom
	}, "alice", "bob", "carol")
	alice, bob, carol := ms[0], ms[1], ms[2]
	need := []Extension{
		requiredCapabilities(t, &RequiredCapabilities{Extensions: []ExtensionType{testExtension}, Proposals: []ProposalType{testProposal}}),
		{Type: testExtension, Data: []byte("group parameter")},
	}

	// The committer refuses a change Carol cannot meet, and so do the
	// receivers of a proposal for it.
	before := snap6(alice.g)
	if _, err := alice.g.Commit(&CommitOptions{Extensions: need}); !isValidation(err, "12.1.7") || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("GroupContextExtensions beyond a member's capabilities: %v", err)
	}
	if !snap6(alice.g).equal(before) {
		t.Fatal("refused commit changed the group")
	}
	if _, err := alice.g.ProposeGroupContextExtensions(need); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("proposing it: %v", err)
	}
	mustReject(t, bob.g, rawProposal(t, alice.g, &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: need}}), ErrUnsupported, "GroupContextExtensions proposal")
	// Likewise a custom proposal Carol does not support.
	if _, err := alice.g.ProposeCustom(testProposal, []byte("x")); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("custom proposal carol does not support: %v", err)
	}
	if _, err := alice.g.Commit(&CommitOptions{Proposals: []Proposal{{Type: testProposal, Custom: []byte("x")}}}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("committing a custom proposal carol does not support: %v", err)
	}
	mustReject(t, bob.g, rawProposal(t, alice.g, &Proposal{Type: testProposal, Custom: []byte("x")}), ErrUnsupported, "unsupported custom proposal")

	// Removing Carol in the same commit makes the change valid (§12.1.7).
	pc, err := alice.g.Commit(&CommitOptions{Remove: []LeafIndex{carol.g.OwnLeafIndex()}, Extensions: need})
	require.NoError(t, err, "GroupContextExtensions with Carol removed")
	deliverCommit(t, alice, pc, ms)
	ms = ms[:2]
	for _, m := range ms {
		if d, ok := findExtension(m.g.Extensions(), testExtension); !ok || string(d) != "group parameter" {
			t.Fatalf("%s: custom group extension missing", m.name)
		}
	}
	agree(t, ms)

	// Now a client lacking the capabilities cannot be added, and one
	// having them can.
	dave, erin := newMember(t, cs, "dave"), newMember(t, cs, "erin")
	if _, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{dave.keyPackage(t, cs).KeyPackage}}); !isValidation(err, "12.1.1") {
		t.Fatalf("adding a member without the required capabilities: %v", err)
	}
	erinKP, err := GenerateKeyPackage(cs, erin.cred, erin.sig, custom)
	require.NoError(t, err)
	pc, err = alice.g.Commit(&CommitOptions{Add: []*KeyPackage{erinKP.KeyPackage}})
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	if erin.g, err = Join(transmit(t, pc.Welcome), erinKP, nil, nil); err != nil {
		t.Fatal(err)
	}
	ms = append(ms, erin)

	// A custom proposal every member supports goes through, and the
	// receivers see it in the staged commit.
	prop, err := bob.g.ProposeCustom(testProposal, []byte("custom body"))
	require.NoError(t, err)
	deliver(t, prop, alice, erin)
	pc, err = erin.g.Commit(nil)
	require.NoError(t, err)
	for _, sc := range deliver(t, pc.Commit, alice, bob) {
		if !slices.ContainsFunc(sc.Proposals, func(p *Proposal) bool { return p.Type == testProposal && string(p.Custom) == "custom body" }) {
			t.Fatal("custom proposal missing from the staged commit")
		}
	}
	require.NoError(t, erin.g.MergePendingCommit(pc))
	agree(t, ms)
}

func TestGREASELastResortApplicationID(t *testing.T) {
	forEachSuite(t, func(t *testing.T, cs CipherSuite) {
		alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
		var err error
		if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil); err != nil {
			t.Fatal(err)
		}
		kp, err := GenerateKeyPackage(cs, bob.cred, bob.sig, &KeyPackageOptions{
			LastResort:     true,
			LeafExtensions: []Extension{{Type: ExtensionApplicationID, Data: []byte("bob's phone")}},
		})
		require.NoError(t, err)
		// GREASE everywhere RFC 9420, §13.5 suggests.
		grease := func(what string, types []uint16) {
			if !slices.ContainsFunc(types, IsGREASE) {
				t.Errorf("no GREASE value in %s", what)
			}
		}
		caps := &kp.KeyPackage.LeafNode.Capabilities
		grease("capabilities.cipher_suites", convert(caps.CipherSuites))
		grease("capabilities.extensions", convert(caps.Extensions))
		grease("capabilities.proposals", convert(caps.Proposals))
		grease("capabilities.credentials", convert(caps.Credentials))
		grease("leaf_node.extensions", extTypes(kp.KeyPackage.LeafNode.Extensions))
		grease("KeyPackage.extensions", extTypes(kp.KeyPackage.Extensions))
		if !kp.KeyPackage.IsLastResort() {
			t.Fatal("last_resort extension missing")
		}
		gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
		require.NoError(t, err)
		grease("GroupInfo.extensions", extTypes(gi.GroupInfo.Extensions))

		// The last resort KeyPackage joins two groups, and its
		// application_id is visible to the other members.
		pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
		require.NoError(t, err)
		require.NoError(t, alice.g.MergePendingCommit(pc))
		if bob.g, err = Join(transmit(t, pc.Welcome), kp, nil, nil); err != nil {
			t.Fatal(err)
		}
		if id, ok := alice.g.ApplicationID(bob.g.OwnLeafIndex()); !ok || string(id) != "bob's phone" {
			t.Fatalf("application_id %q", id)
		}
		if _, ok := alice.g.ApplicationID(alice.g.OwnLeafIndex()); ok {
			t.Fatal("application_id where none was set")
		}
		agree(t, []*member{alice, bob})
		carol := newMember(t, cs, "carol")
		if carol.g, err = NewGroup(cs, carol.cred, carol.sig, nil, nil); err != nil {
			t.Fatal(err)
		}
		pc, err = carol.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
		require.NoError(t, err)
		require.NoError(t, carol.g.MergePendingCommit(pc))
		if _, err := Join(transmit(t, pc.Welcome), kp, nil, nil); err != nil {
			t.Fatalf("second use of a last resort KeyPackage: %v", err)
		}
	})
}

func convert[T ~uint16](v []T) []uint16 {
	out := make([]uint16, len(v))
	for i := range v {
		out[i] = uint16(v[i])
	}
	return out
}

func extTypes(exts []Extension) []uint16 {
	var out []uint16
	for _, e := range exts {
		out = append(out, uint16(e.Type))
	}
	return out
}

// TestMalformedProposals sends malformed proposals of every type, from a
// member that skips the sender-side checks, and checks that each is
// rejected with a matchable error and no state change.
func TestMalformedProposals(t *testing.T) {
	forEachSuite(t, testMalformedProposals)
}

func testMalformedProposals(t *testing.T, cs CipherSuite) {
	ms := m6Group(t, cs, nil, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	nh := cs.HashSize()
	other := CipherSuite(0x0001)
	if cs == other {
		other = 0x0002
	}
	kp := newMember(t, cs, "carol").keyPackage(t, cs)
	badSig := *kp.KeyPackage
	badSig.Signature = bytes.Clone(badSig.Signature)
	badSig.Signature[0] ^= 1
	wrongSuite := *kp.KeyPackage
	wrongSuite.CipherSuite = other
	leaf := *alice.g.state.tree.Leaf(alice.g.OwnLeafIndex())
	leaf.Source = 2
	leaf.Signature = bytes.Clone(leaf.Signature)
	psk := func(id PreSharedKeyID) *Proposal {
		return &Proposal{Type: ProposalTypePreSharedKey, PreSharedKey: &PreSharedKeyProposal{PSK: id}}
	}
	gce := func(exts ...Extension) *Proposal {
		return &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: exts}}
	}
	cases := []struct {
		name string
		p    *Proposal
		want error
	}{
		{"add/bad-signature", &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: badSig}}, ErrInvalidSignature},
		{"add/wrong-suite", &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: wrongSuite}}, nil},
		{"update/bad-signature", &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}}, nil},
		{"remove/blank-leaf", &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 99}}, nil},
		{"psk/short-nonce", psk(PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("k"), PSKNonce: make([]byte, nh-1)}), nil},
		{"psk/reinit-usage", psk(PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageReInit, PSKGroupID: alice.g.GroupID(), PSKNonce: make([]byte, nh)}), nil},
		{"psk/branch-usage", psk(PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageBranch, PSKGroupID: alice.g.GroupID(), PSKNonce: make([]byte, nh)}), nil},
		{"reinit/old-version", &Proposal{Type: ProposalTypeReInit, ReInit: &ReInitProposal{GroupID: []byte("g"), Version: 0, CipherSuite: cs}}, nil},
		{"reinit/unknown-suite", &Proposal{Type: ProposalTypeReInit, ReInit: &ReInitProposal{GroupID: []byte("g"), Version: MLS10, CipherSuite: 0x7777}}, ErrUnsupported},
		{"external-init/by-reference", &Proposal{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInitProposal{KEMOutput: randomBytes(32)}}, nil},
		{"gce/duplicate", gce(Extension{Type: ExtensionApplicationID, Data: []byte{}}, Extension{Type: ExtensionApplicationID, Data: []byte{}}), nil},
		{"gce/required-capabilities-malformed", gce(Extension{Type: ExtensionRequiredCapabilities, Data: []byte{1, 2, 3}}), ErrMalformed},
		{"gce/external-senders-malformed", gce(Extension{Type: ExtensionExternalSenders, Data: []byte{5, 0}}), ErrMalformed},
		{"gce/unsupported-extension", gce(Extension{Type: testExtension, Data: []byte{}}), ErrUnsupported},
		{"gce/unmet-requirement", gce(requiredCapabilities(t, &RequiredCapabilities{Proposals: []ProposalType{testProposal}})), ErrUnsupported},
		{"custom/unsupported", &Proposal{Type: testProposal, Custom: []byte{}}, ErrUnsupported},
	}
	for _, c := range cases {
		mustReject(t, bob.g, rawProposal(t, alice.g, c.p), c.want, c.name)
	}
	// The group still works.
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	agree(t, ms)
}

// externalFixture is a group with an external sender, seen from bob, and
// valid messages from outside it: an external Remove, a new member's Add
// and an external commit.
func externalFixture(tb testing.TB) (*Group, [][]byte) {
	tb.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	dsKey, err := cs.GenerateSignatureKey()
	if err != nil {
		tb.Fatal(err)
	}
	data, err := MarshalExternalSenders([]ExternalSender{{SignatureKey: dsKey.PublicKey(), Credential: Credential{Type: CredentialBasic, Identity: []byte("server")}}})
	if err != nil {
		tb.Fatal(err)
	}
	ms := m6Group(tb, cs, &GroupOptions{Extensions: []Extension{{Type: ExtensionExternalSenders, Data: data}}}, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	var seeds [][]byte
	add := func(m *MLSMessage, err error) {
		if err != nil {
			tb.Fatal(err)
		}
		b, err := m.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	ds := &ExternalSigner{Key: dsKey}
	add(ds.Propose(alice.g.GroupID(), alice.g.Epoch(), &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 0}}, nil))
	add(ds.Propose(alice.g.GroupID(), alice.g.Epoch(), &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{}}, nil))
	carol := newMember(tb, cs, "carol")
	add(NewMemberProposal(carol.keyPackage(tb, cs), alice.g.GroupID(), alice.g.Epoch(), nil))
	gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	if err != nil {
		tb.Fatal(err)
	}
	_, commit, err := JoinExternal(gi, carol.cred, carol.sig, nil, nil)
	add(commit, err)
	return bob.g, seeds
}

// FuzzProcessExternal feeds messages from outside the group to a member:
// every one must be accepted or rejected with a matchable error and no
// state change.
func FuzzProcessExternal(f *testing.F) {
	g, seeds := externalFixture(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			return
		}
		before := snap6(g)
		if _, err := g.Process(m); err != nil {
			if !matchable(err) {
				t.Fatalf("error outside the known set: %v", err)
			}
			if !snap6(g).equal(before) {
				t.Fatal("rejected message changed the group")
			}
			return
		}
		// Accepted (a valid proposal is cached): start again from a
		// fresh group.
		g, _ = externalFixture(t)
	})
}
