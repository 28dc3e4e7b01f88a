package mls

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/keyschedule"
)

// This file holds the regression tests for leaf indexes read from the wire
// (RFC 9420, Appendix C: leaf l is node 2l, which wrapped around in uint32
// for l >= 2^31). Every forged message is correctly signed and MACed with
// the real group's keys, so the index check is the one that fires.

const (
	wrapAlice = LeafIndex(1 << 31)   // node 2^32 mod 2^32 = 0: alice
	wrapBob   = LeafIndex(1<<31 + 1) // aliases bob, leaf 1
	wrapCarol = LeafIndex(1<<31 + 2) // aliases carol, leaf 2
	maxUint32 = LeafIndex(1<<32 - 1) // the largest index a peer can send
)

// rfaGroup returns a three-member group: alice (0), bob (1), carol (2).
func rfaGroup(t *testing.T, cfg *Config) (alice, bob, carol *member) {
	t.Helper()
	ms := m6Group(t, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, nil, cfg, nil, "alice", "bob", "carol")
	return ms[0], ms[1], ms[2]
}

// rfaMustState returns g's encoded state.
func rfaMustState(t *testing.T, g *Group) []byte {
	t.Helper()
	st, err := g.MarshalState()
	require.NoError(t, err)
	return st
}

// rfaPublic frames c as a PublicMessage from g's member: signed with g's
// signature key over g's GroupContext and with g's membership tag, whatever
// sender index c carries.
func rfaPublic(t testing.TB, g *Group, c FramedContent, auth FramedContentAuthData) *MLSMessage {
	t.Helper()
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: c, Auth: auth}
	require.NoError(t, signContent(g.cs, g.sigPriv, ac, g.state.ctxBytes))
	pm, err := g.state.framer.protectPublic(ac)
	require.NoError(t, err)
	return transmit(t, &MLSMessage{Version: MLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm})
}

// rfaPrivate frames c, sent by g's member, as a PrivateMessage encrypted
// with g's next key, signed over g's GroupContext. If senderLeaf is not
// nil, the leaf index in the encrypted sender data is replaced with it
// (and the sender data re-encrypted with the epoch's sender data key).
func rfaPrivate(t testing.TB, g *Group, c FramedContent, auth FramedContentAuthData, senderLeaf *uint32) *MLSMessage {
	t.Helper()
	ac := &AuthenticatedContent{WireFormat: WireFormatPrivateMessage, Content: c, Auth: auth}
	require.NoError(t, signContent(g.cs, g.sigPriv, ac, g.state.ctxBytes))
	f := g.state.framer
	pm, err := f.protectPrivate(ac, g.padding)
	require.NoError(t, err)
	if senderLeaf != nil {
		sdKey, sdNonce := keyschedule.SenderDataKey(f.cs, f.senderDataSecret, pm.Ciphertext)
		aad, err := senderDataAAD(pm.GroupID, pm.Epoch, pm.ContentType)
		require.NoError(t, err)
		sd, err := f.cs.AEADOpen(sdKey, sdNonce, aad, pm.EncryptedSenderData)
		require.NoError(t, err)
		l := *senderLeaf
		sd[0], sd[1], sd[2], sd[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		pm.EncryptedSenderData, err = f.cs.AEADSeal(sdKey, sdNonce, aad, sd)
		require.NoError(t, err)
	}
	return transmit(t, &MLSMessage{Version: MLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: pm})
}

// rfaRejects processes msg at g and checks that the error matches want (an
// error for errors.Is, or a *ValidationError for errors.As), and that g's
// encoded state did not change.
func rfaRejects(t *testing.T, g *Group, msg *MLSMessage, want any) error {
	t.Helper()
	before := rfaMustState(t, g)
	_, err := g.Process(msg)
	require.Error(t, err)
	switch w := want.(type) {
	case *ValidationError:
		require.ErrorAs(t, err, &w)
	case error:
		require.ErrorIs(t, err, w)
	}
	require.True(t, bytes.Equal(before, rfaMustState(t, g)), "a rejected message changed the state")
	return err
}

// TestRefuseRemoveWrappedLeaf: a Remove of leaf 2^31+2 in a three-member
// group named carol (leaf 2) through 2*l mod 2^32; received by reference it
// was cached, sent by value it removed carol (RFC 9420, §12.1.3).
func TestRefuseRemoveWrappedLeaf(t *testing.T) {
	alice, bob, _ := rfaGroup(t, nil)
	for _, l := range []LeafIndex{wrapCarol, wrapBob, wrapAlice, maxUint32, 4} {
		p := &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: l}}
		err := rfaRejects(t, alice.g, rawProposal(t, bob.g, p), ErrLeafIndexRange)
		require.True(t, isValidation(err, "12.1.3"), "%v", err)

		// By value in a commit: the same check, before anything else.
		c := bob.g.framedContent(nil)
		c.ContentType = ContentTypeCommit
		c.Commit = &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: p}}}
		msg := rfaPublic(t, bob.g, c, FramedContentAuthData{ConfirmationTag: make([]byte, 32)})
		err = rfaRejects(t, alice.g, msg, ErrLeafIndexRange)
		require.True(t, isValidation(err, "12.1.3"), "%v", err)
	}
	// The committer cannot build one either.
	_, err := bob.g.Commit(&CommitOptions{Remove: []LeafIndex{wrapBob}})
	require.ErrorIs(t, err, ErrLeafIndexRange)
	_, err = bob.g.ProposeRemove(wrapCarol)
	require.ErrorIs(t, err, ErrLeafIndexRange)
}

// TestRefusePublicSenderWrappedLeaf: a PublicMessage whose sender index is
// 2^31+1, signed by bob (leaf 1) and carrying a valid membership tag, was
// accepted as coming from bob (RFC 9420, §6).
func TestRefusePublicSenderWrappedLeaf(t *testing.T) {
	alice, bob, _ := rfaGroup(t, nil)
	for _, idx := range []uint32{uint32(wrapBob), uint32(maxUint32), 4} {
		c := bob.g.framedContent(nil)
		c.Sender.Index = idx
		c.ContentType = ContentTypeProposal
		c.Proposal = &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 2}}
		err := rfaRejects(t, alice.g, rfaPublic(t, bob.g, c, FramedContentAuthData{}), ErrLeafIndexRange)
		require.True(t, isValidation(err, "6"), "%v", err)
	}
}

// TestRefusePrivateSenderWrappedLeaf: the leaf index of a PrivateMessage's
// sender data is range-checked before the secret tree is touched (RFC
// 9420, §6.3.2).
func TestRefusePrivateSenderWrappedLeaf(t *testing.T) {
	alice, bob, _ := rfaGroup(t, nil)
	for _, idx := range []uint32{uint32(wrapBob), uint32(maxUint32), 4} {
		c := bob.g.framedContent(nil)
		c.ContentType = ContentTypeApplication
		c.ApplicationData = []byte("hi")
		msg := rfaPrivate(t, bob.g, c, FramedContentAuthData{}, &idx)
		err := rfaRejects(t, alice.g, msg, ErrLeafIndexRange)
		require.True(t, isValidation(err, "6.3.2"), "%v", err)
	}
}

// TestRefuseGroupInfoSignerWrappedLeaf: a GroupInfo signed by alice (leaf 0)
// naming signer 2^31 must not verify as alice's (RFC 9420, §12.4.3.1).
func TestRefuseGroupInfoSignerWrappedLeaf(t *testing.T) {
	alice, _, _ := rfaGroup(t, nil)
	msg, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	gi := msg.GroupInfo
	gi.Signer = wrapAlice
	require.NoError(t, gi.sign(alice.g.cs, alice.g.sigPriv))
	dave := newMember(t, alice.g.cs, "dave")
	_, _, err = JoinExternal(transmit(t, msg), dave.cred, dave.sig, nil, nil)
	require.ErrorIs(t, err, ErrLeafIndexRange)
	require.True(t, isValidation(err, "12.4.3.1"), "%v", err)
}
