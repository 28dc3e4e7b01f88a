package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
)

// Negative tests for checks the mutation run (internal/cmd/mutants) found
// no test proving. Each builds correctly signed and MACed input (see
// forge_test.go), so that the check under test is the one that refuses.

// TestRefuseCommitOfTwoCustomTypesOneUnsupported: a commit covering two
// proposal types RFC 9420 does not define, one of which a member does not
// support, is refused (RFC 9420, §12.2, §13.2). With one custom type the
// single-type path checks it; two take the one-pass path of
// checkCustomProposalsSupport.
func TestRefuseCommitOfTwoCustomTypesOneUnsupported(t *testing.T) {
	const other ProposalType = 0xff03
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	both := &KeyPackageOptions{ProposalTypes: []ProposalType{testProposal, other}}
	ms := m6Group(t, cs, &GroupOptions{ProposalTypes: both.ProposalTypes}, nil, func(i int) *KeyPackageOptions {
		if i == 2 {
			// Carol supports testProposal only.
			return &KeyPackageOptions{ProposalTypes: []ProposalType{testProposal}}
		}
		return both
	}, "alice", "bob", "carol")
	alice, bob := ms[0], ms[1]
	commit := byValue(
		&Proposal{Type: testProposal, Custom: []byte("supported by all")},
		&Proposal{Type: other, Custom: []byte("not supported by carol")},
	)
	refused(t, bob.g, forgeCommit(t, alice.g, WireFormatPublicMessage, commit), ErrUnsupported, "13.2")
}

// TestCommitDropsProposalPolicyNowRejects: a cached proposal the
// application's ProposalPolicy accepted when it arrived but rejects when
// the member commits is dropped with the policy's reason, and the commit
// goes through without it (RFC 9420, §12.1, §12.2): cachedProposalUsable
// runs the checks of a commit's proposals again.
func TestCommitDropsProposalPolicyNowRejects(t *testing.T) {
	reject := false
	cfg := &Config{ProposalPolicy: func(p *Proposal, _ Sender) error {
		if reject && p.Type == ProposalTypeRemove {
			return errors.New("no removals today")
		}
		return nil
	}}
	alice, bob, carol := rfaGroup(t, cfg)
	prop, err := bob.g.ProposeRemove(carol.g.OwnLeafIndex())
	require.NoError(t, err)
	rfaProcess(t, prop, alice, carol)

	reject = true
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	require.Len(t, pc.Dropped, 1)
	require.True(t, isValidation(pc.Dropped[0].Err, "12.1"), "%v", pc.Dropped[0].Err)
	require.ErrorContains(t, pc.Dropped[0].Err, "no removals today")
	require.Equal(t, ProposalTypeRemove, pc.Dropped[0].Proposal.Type)
	require.Empty(t, pc.Staged().Removed)
	deliverCommit(t, alice, pc, []*member{alice, bob, carol})
	agree(t, []*member{alice, bob, carol})
}

// TestRefuseResumedWelcomeUnknownExternalPSK: a Welcome joined with
// JoinOptions.PreviousGroup and no PSK store of the application, whose
// GroupSecrets name an external PSK, is refused with ErrNotFound (RFC
// 9420, §8.4, §12.4.3.1), not a nil dereference in the store that serves
// the previous group's resumption PSKs.
func TestRefuseResumedWelcomeUnknownExternalPSK(t *testing.T) {
	alice, w, kp := welcomeFixture(t, nil, nil)
	cs := alice.g.cs
	bad := resealWelcome(t, w, kp, alice.sig, func(_ *GroupInfo, gs *GroupSecrets) {
		gs.PSKs = append(gs.PSKs, PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("nobody holds this"), PSKNonce: keyschedule.NewPSKNonce(cs)})
	})
	var err error
	require.NotPanics(t, func() {
		_, err = Join(transmit(t, bad), kp, &JoinOptions{PreviousGroup: alice.g}, nil)
	})
	requireMatches(t, err, ErrNotFound)
}

// TestRefuseResumedWelcomeOtherPreviousGroup: a resumed Welcome whose
// reinit PSK names a group other than JoinOptions.PreviousGroup cannot be
// checked against that group and is refused with ErrNotFound (RFC 9420,
// §12.4.3.1), even when the new group matches that group's ReInit. (Join
// reaches this check when the application's PSK store answers for the
// named group.)
func TestRefuseResumedWelcomeOtherPreviousGroup(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	prev := threeMembers(t, nil)[0].g
	ri := NewReInitProposal(ReInitProposal{GroupID: []byte("next group"), Version: MLS10, CipherSuite: cs})
	pc, err := prev.Commit(&CommitOptions{Proposals: []Proposal{ri}})
	require.NoError(t, err)
	require.NoError(t, prev.MergePendingCommit(pc))
	ctx := &GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("next group"), Epoch: 1}
	id := PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, Usage: keyschedule.ResumptionPSKUsageReInit, PSKGroupID: prev.GroupID(), PSKEpoch: prev.Epoch(), PSKNonce: keyschedule.NewPSKNonce(cs)}
	require.NoError(t, checkResumedWelcome([]PreSharedKeyID{id}, ctx, prev.state.tree, prev), "the matching link")
	id.PSKGroupID = []byte("some other group")
	requireMatches(t, checkResumedWelcome([]PreSharedKeyID{id}, ctx, prev.state.tree, prev), ErrNotFound)
}

// TestRefuseGroupInfoTrailingData: a Welcome whose GroupInfo decrypts
// but does not parse exactly (a stray byte after a correctly signed
// GroupInfo) is malformed (RFC 9420, §12.4.3), although every field of it
// is there and its signature verifies.
func TestRefuseGroupInfoTrailingData(t *testing.T) {
	_, w, kp := welcomeFixture(t, nil, nil)
	bad := resealGroupInfoSuffix(t, w, kp, []byte{0})
	_, err := Join(transmit(t, bad), kp, nil, nil)
	requireMatches(t, err, ErrMalformed)
	good := resealGroupInfoSuffix(t, w, kp, nil)
	_, err = Join(transmit(t, good), kp, nil, nil)
	require.NoError(t, err, "the same Welcome sealed again without the stray byte")
}

// resealGroupInfoSuffix decrypts the GroupInfo of w (a Welcome without
// PSKs) as the holder of kp would, appends suffix to its encoding, and
// encrypts it again with the same welcome key; the GroupSecrets, whose
// encryption covers the encrypted GroupInfo, are encrypted again for kp.
func resealGroupInfoSuffix(t testing.TB, w *MLSMessage, kp *KeyPackagePrivate, suffix []byte) *MLSMessage {
	t.Helper()
	wel := transmit(t, w).Welcome
	cs := wel.CipherSuite
	gs, err := decryptGroupSecrets(wel, kp)
	require.NoError(t, err)
	require.Empty(t, gs.PSKs)
	joiner, err := keyschedule.NewJoinerSecret(cs, gs.JoinerSecret)
	require.NoError(t, err)
	pskSecret, err := keyschedule.PSKSecret(cs, nil)
	require.NoError(t, err)
	ws := joiner.WelcomeSecret(pskSecret)
	gi, err := decryptGroupInfo(cs, wel, ws)
	require.NoError(t, err)
	giBytes, err := wire.Marshal(gi.marshal)
	require.NoError(t, err)
	wel.EncryptedGroupInfo, err = cs.AEADSeal(ws.Key(), ws.Nonce(), nil, append(giBytes, suffix...))
	require.NoError(t, err)
	ref, err := kp.KeyPackage.Ref()
	require.NoError(t, err)
	gsBytes, err := wire.Marshal(gs.marshal)
	require.NoError(t, err)
	for i := range wel.Secrets {
		if bytes.Equal(wel.Secrets[i].NewMember, ref) {
			e := &wel.Secrets[i].EncryptedGroupSecrets
			e.KEMOutput, e.Ciphertext, err = cs.EncryptWithLabel(kp.KeyPackage.InitKey, "Welcome", wel.EncryptedGroupInfo, gsBytes)
			require.NoError(t, err)
		}
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: wel}
}
