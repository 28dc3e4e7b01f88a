package mls

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// This file holds the regression tests for the proposal cache and the
// choice of cached proposals a commit covers (RFC 9420, §12.1.8, §12.2,
// §12.4.1).

// rfaExternalGroup returns alice, bob and carol in a group whose
// external_senders extension lists the returned signer, each member with
// the Config cfg.
func rfaExternalGroup(t *testing.T, cfg *Config) (ms []*member, ds *ExternalSigner) {
	t.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	dsKey, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	data, err := MarshalExternalSenders([]ExternalSender{{SignatureKey: dsKey.PublicKey(), Credential: Credential{Type: CredentialBasic, Identity: []byte("server")}}})
	require.NoError(t, err)
	gopts := &GroupOptions{Extensions: []Extension{{Type: ExtensionExternalSenders, Data: data}}}
	return m6Group(t, cs, gopts, cfg, nil, "alice", "bob", "carol"), &ExternalSigner{Index: 0, Key: dsKey}
}

// rfaProcess processes msg at each member and requires success.
func rfaProcess(t *testing.T, msg *MLSMessage, to ...*member) {
	t.Helper()
	for _, m := range to {
		_, err := m.g.Process(transmit(t, msg))
		require.NoError(t, err, m.name)
	}
}

// TestRefuseOutsiderProposalsByDefault: with no policy, a member's
// Commit(nil) leaves out new_member_proposal Adds and external senders'
// proposals, and says so in PendingCommit.Dropped (RFC 9420, §12.1.8).
// Today's code committed them: anyone knowing the group ID and epoch got in.
func TestRefuseOutsiderProposalsByDefault(t *testing.T) {
	ms, ds := rfaExternalGroup(t, nil)
	alice, bob, carol := ms[0], ms[1], ms[2]
	dave := newMember(t, alice.g.cs, "dave")
	nmp, err := NewMemberProposal(dave.keyPackage(t, alice.g.cs), alice.g.GroupID(), alice.g.Epoch(), nil)
	require.NoError(t, err)
	ext, err := ds.Propose(alice.g.GroupID(), alice.g.Epoch(), &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: carol.g.OwnLeafIndex()}}, nil)
	require.NoError(t, err)
	rfaProcess(t, nmp, alice, bob, carol)
	rfaProcess(t, ext, alice, bob, carol)

	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 2)
	for _, d := range pc.Dropped {
		require.ErrorIs(t, d.Err, ErrNonMemberProposal)
		assert.True(t, isNonMember(d.Sender))
	}
	assert.Empty(t, pc.Staged().Added)
	assert.Empty(t, pc.Staged().Removed)
	assert.Nil(t, pc.Welcome)
	deliverCommit(t, alice, pc, ms)
	assert.Equal(t, 3, alice.g.MemberCount())
	assert.True(t, carol.g.Active())
}

// TestOutsiderProposalsPolicy: the policy decides per proposal; what it
// refuses is dropped with its reason, the rest is committed.
func TestOutsiderProposalsPolicy(t *testing.T) {
	errNoServerRemoves := errors.New("servers may not remove")
	policy := &Config{AcceptNonMemberProposal: func(p *Proposal, s Sender) error {
		if s.Type == SenderTypeExternal {
			return errNoServerRemoves
		}
		return nil
	}}
	ms, ds := rfaExternalGroup(t, policy)
	alice, bob, carol := ms[0], ms[1], ms[2]
	dave := newMember(t, alice.g.cs, "dave")
	daveKP := dave.keyPackage(t, alice.g.cs)
	nmp, err := NewMemberProposal(daveKP, alice.g.GroupID(), alice.g.Epoch(), nil)
	require.NoError(t, err)
	ext, err := ds.Propose(alice.g.GroupID(), alice.g.Epoch(), &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: carol.g.OwnLeafIndex()}}, nil)
	require.NoError(t, err)
	rfaProcess(t, nmp, alice, bob, carol)
	rfaProcess(t, ext, alice, bob, carol)

	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	require.ErrorIs(t, pc.Dropped[0].Err, ErrNonMemberProposal)
	require.ErrorIs(t, pc.Dropped[0].Err, errNoServerRemoves)
	assert.Equal(t, SenderTypeExternal, pc.Dropped[0].Sender.Type)
	assert.Len(t, pc.Staged().Added, 1)
	deliverCommit(t, alice, pc, ms)
	dave.g, err = Join(transmit(t, pc.Welcome), daveKP, nil, policy)
	require.NoError(t, err)
	agree(t, []*member{alice, bob, carol, dave})
}

// TestCommitDropsDuplicateNewMemberAdds: two new_member_proposals for the
// same KeyPackage (different authenticated data, so different references)
// made every member's Commit(nil) fail with "two Adds for the same
// client": any outsider could block the group (RFC 9420, §12.2).
func TestCommitDropsDuplicateNewMemberAdds(t *testing.T) {
	acceptAll := &Config{AcceptNonMemberProposal: func(*Proposal, Sender) error { return nil }}
	ms, _ := rfaExternalGroup(t, acceptAll)
	alice, bob, carol := ms[0], ms[1], ms[2]
	dave := newMember(t, alice.g.cs, "dave")
	daveKP := dave.keyPackage(t, alice.g.cs)
	for _, ad := range []string{"first", "second"} {
		nmp, err := NewMemberProposal(daveKP, alice.g.GroupID(), alice.g.Epoch(), []byte(ad))
		require.NoError(t, err)
		rfaProcess(t, nmp, alice, bob, carol)
	}
	require.Len(t, alice.g.state.proposals, 2)

	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	require.True(t, isValidation(pc.Dropped[0].Err, "12.2"), "%v", pc.Dropped[0].Err)
	assert.True(t, bytes.Equal(pc.Dropped[0].Ref, alice.g.state.proposals[1].ref))
	assert.Len(t, pc.Staged().Added, 1)
	deliverCommit(t, alice, pc, ms)
	dave.g, err = Join(transmit(t, pc.Welcome), daveKP, nil, acceptAll)
	require.NoError(t, err)
	agree(t, []*member{alice, bob, carol, dave})
}

// TestCommitDropsExpiredKeyPackage: a cached Add whose KeyPackage expired
// since it was proposed made every later Commit(nil) fail (RFC 9420, §7.2,
// §12.2); it is dropped with treekem.ErrLifetime.
func TestCommitDropsExpiredKeyPackage(t *testing.T) {
	now := time.Now()
	clock := &Config{Now: func() time.Time { return now }}
	alice, bob, carol := rfaGroup(t, clock)
	cs := alice.g.cs
	dave := newMember(t, cs, "dave")
	kp, err := GenerateKeyPackage(cs, dave.cred, dave.sig, &KeyPackageOptions{Lifetime: time.Hour})
	require.NoError(t, err)
	prop, err := bob.g.ProposeAdd(kp.KeyPackage)
	require.NoError(t, err)
	rfaProcess(t, prop, alice, carol)

	_, err = alice.g.EncryptApplication([]byte("x"), nil)
	require.ErrorIs(t, err, ErrPendingProposals)
	now = now.Add(3 * time.Hour)
	// The expired Add is no valid proposal: it does not hold up sending.
	_, err = alice.g.EncryptApplication([]byte("x"), nil)
	require.NoError(t, err)
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	require.ErrorIs(t, pc.Dropped[0].Err, treekem.ErrLifetime)
	assert.Equal(t, ProposalTypeAdd, pc.Dropped[0].Proposal.Type)
	assert.Empty(t, pc.Staged().Added)
	deliverCommit(t, alice, pc, []*member{alice, bob, carol})
	agree(t, []*member{alice, bob, carol})
}

// TestCommitDropsStaleRemove: a cached Remove that conflicts with the
// committer's own Remove of the same leaf, or removes the committer, is
// dropped rather than failing the commit (RFC 9420, §12.2).
func TestCommitDropsStaleRemove(t *testing.T) {
	alice, bob, carol := rfaGroup(t, nil)
	for _, l := range []LeafIndex{carol.g.OwnLeafIndex(), alice.g.OwnLeafIndex()} {
		prop, err := bob.g.ProposeRemove(l)
		require.NoError(t, err)
		rfaProcess(t, prop, alice, carol)
	}
	pc, err := alice.g.Commit(&CommitOptions{Remove: []LeafIndex{carol.g.OwnLeafIndex()}})
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 2)
	for _, d := range pc.Dropped {
		require.True(t, isValidation(d.Err, "12.2"), "%v", d.Err)
	}
	assert.Equal(t, []LeafIndex{carol.g.OwnLeafIndex()}, pc.Staged().Removed)
	deliverCommit(t, alice, pc, []*member{alice, bob, carol})
	agree(t, []*member{alice, bob})
}

// TestProposalCacheBound: once MaxCachedProposals proposals are cached, a
// further one is refused with ErrProposalCacheFull and changes nothing; a
// proposal already cached is still accepted again, and a commit empties
// the cache.
func TestProposalCacheBound(t *testing.T) {
	cfg := &Config{MaxCachedProposals: 2}
	alice, bob, carol := rfaGroup(t, cfg)
	cs := alice.g.cs
	var props []*MLSMessage
	for _, name := range []string{"dave", "erin", "frank"} {
		m := newMember(t, cs, name)
		p, err := carol.g.ProposeAdd(m.keyPackage(t, cs).KeyPackage)
		if len(props) == 2 {
			// carol's own cache is full too.
			require.ErrorIs(t, err, ErrProposalCacheFull)
			p = rawProposal(t, carol.g, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *m.keyPackage(t, cs).KeyPackage}})
		} else {
			require.NoError(t, err)
		}
		props = append(props, transmit(t, p))
	}
	rfaProcess(t, props[0], alice, bob)
	rfaProcess(t, props[1], alice, bob)
	before := rfaMustState(t, alice.g)
	_, err := alice.g.Process(props[2])
	require.ErrorIs(t, err, ErrProposalCacheFull)
	require.True(t, bytes.Equal(before, rfaMustState(t, alice.g)))
	_, err = alice.g.ProposeRemove(carol.g.OwnLeafIndex())
	require.ErrorIs(t, err, ErrProposalCacheFull)
	// A duplicate of a cached proposal is fine.
	res, err := alice.g.Process(props[1])
	require.NoError(t, err)
	require.NotNil(t, res.ProposalRef)

	pc, err := bob.g.Commit(nil)
	require.NoError(t, err)
	assert.Len(t, pc.Staged().Added, 2)
	deliverCommit(t, bob, pc, []*member{alice, bob, carol})
	assert.Empty(t, alice.g.state.proposals)
}

// TestProposalLookupAfterLoad: references resolve through the cache's
// index also after the state was stored and loaded.
func TestProposalLookupAfterLoad(t *testing.T) {
	alice, bob, carol := rfaGroup(t, nil)
	cs := alice.g.cs
	dave := newMember(t, cs, "dave")
	prop, err := bob.g.ProposeAdd(dave.keyPackage(t, cs).KeyPackage)
	require.NoError(t, err)
	rfaProcess(t, prop, alice, carol)
	st := rfaMustState(t, alice.g)
	alice.g, err = LoadGroup(st, nil)
	require.NoError(t, err)
	c := alice.g.state.proposals[0]
	got, ok := alice.g.state.findProposal(c.ref)
	require.True(t, ok)
	assert.Same(t, c.proposal, got.proposal)
	pc, err := carol.g.Commit(nil)
	require.NoError(t, err)
	deliverCommit(t, carol, pc, []*member{alice, bob, carol})
	assert.Equal(t, 4, alice.g.MemberCount())
}

// TestCommitDropsUnknownPSK: a cached PreSharedKey proposal naming an
// external PSK this member does not hold made its every Commit(nil) fail
// in the key schedule; it is dropped with ErrNotFound (RFC 9420, §8.4).
func TestCommitDropsUnknownPSK(t *testing.T) {
	psks := newMemoryPSKs()
	psks.external["bob-only"] = randomBytes(32)
	alice, bob, carol := rfaGroup(t, nil)
	bob.g.cfg.PSKs = psks
	prop, err := bob.g.ProposePSK(PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("bob-only")})
	require.NoError(t, err)
	rfaProcess(t, prop, alice, carol)
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	require.ErrorIs(t, pc.Dropped[0].Err, ErrNotFound)
	assert.Empty(t, pc.Staged().PSKs)
	deliverCommit(t, alice, pc, []*member{alice, bob, carol})
}

// TestCommitDropsByWholeListRule: a cached Add that passes on its own but
// not together with a cached GroupContextExtensions proposal (the new
// member does not support the new extension, RFC 9420, §12.1.7, §13.4) is
// dropped; the GroupContextExtensions proposal is committed.
func TestCommitDropsByWholeListRule(t *testing.T) {
	const extType = ExtensionType(0xff10)
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := m6Group(t, cs, &GroupOptions{ExtensionTypes: []ExtensionType{extType}}, nil,
		func(int) *KeyPackageOptions { return &KeyPackageOptions{ExtensionTypes: []ExtensionType{extType}} },
		"alice", "bob", "carol")
	alice, bob, carol := ms[0], ms[1], ms[2]
	gce, err := bob.g.ProposeGroupContextExtensions([]Extension{{Type: extType, Data: []byte("x")}})
	require.NoError(t, err)
	dave := newMember(t, cs, "dave")
	add, err := carol.g.ProposeAdd(dave.keyPackage(t, cs).KeyPackage)
	require.NoError(t, err)
	rfaProcess(t, gce, alice, carol)
	rfaProcess(t, add, alice, bob)

	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	assert.Equal(t, ProposalTypeAdd, pc.Dropped[0].Proposal.Type)
	// The Add's leaf does not support the new extension (§12.1.7).
	err = pc.Dropped[0].Err
	require.True(t, errors.Is(err, ErrUnsupported) || errors.Is(err, treekem.ErrCapabilities), "%v", err)
	assert.Empty(t, pc.Staged().Added)
	deliverCommit(t, alice, pc, ms)
	require.Len(t, alice.g.Extensions(), 1)
	agree(t, ms)
}

// TestProposalCacheBoundPrivate: a PrivateMessage proposal refused because
// the cache is full consumes no key: the same bytes are refused the same
// way again, with the encoded state unchanged.
func TestProposalCacheBoundPrivate(t *testing.T) {
	alice, bob, carol := rfaGroup(t, &Config{MaxCachedProposals: 1, Handshake: HandshakePrivate})
	cs := alice.g.cs
	first, err := carol.g.ProposeAdd(newMember(t, cs, "dave").keyPackage(t, cs).KeyPackage)
	require.NoError(t, err)
	rfaProcess(t, first, alice)
	c := bob.g.framedContent(nil)
	c.ContentType = ContentTypeProposal
	c.Proposal = &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *newMember(t, cs, "erin").keyPackage(t, cs).KeyPackage}}
	second := rfaPrivate(t, bob.g, c, FramedContentAuthData{}, nil)
	for range 2 {
		rfaRejects(t, alice.g, second, ErrProposalCacheFull)
	}
}

// TestCommitDropsAddOfMember: a cached Add whose KeyPackage carries the
// signature key of a current member cannot be committed (RFC 9420, §7.3:
// keys are unique in the tree); it neither holds up sending nor fails the
// commit, which drops it with treekem.ErrDuplicateKey.
func TestCommitDropsAddOfMember(t *testing.T) {
	alice, bob, carol := rfaGroup(t, nil)
	cs := alice.g.cs
	kp, err := GenerateKeyPackage(cs, carol.cred, carol.sig, nil)
	require.NoError(t, err)
	prop, err := bob.g.ProposeAdd(kp.KeyPackage)
	require.NoError(t, err)
	rfaProcess(t, prop, alice, carol)
	_, err = alice.g.EncryptApplication([]byte("x"), nil)
	require.NoError(t, err)
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	require.ErrorIs(t, pc.Dropped[0].Err, treekem.ErrDuplicateKey)
	deliverCommit(t, alice, pc, []*member{alice, bob, carol})
	agree(t, []*member{alice, bob, carol})
}
