package mls

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWireFormatPolicyOnInput: a group configured for private handshakes
// refuses a member's proposal or commit sent as a PublicMessage, and one
// configured HandshakePublicOnly refuses them as PrivateMessage (RFC 9420,
// §6); both correctly signed and MACed, so the policy is what refuses them.
// Non-members' PublicMessages are still accepted.
func TestWireFormatPolicyOnInput(t *testing.T) {
	t.Run("private", func(t *testing.T) {
		alice, bob, carol := rfaGroup(t, &Config{Handshake: HandshakePrivate})
		remove := &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: carol.g.OwnLeafIndex()}}
		err := rfaRejects(t, alice.g, rawProposal(t, bob.g, remove), ErrWireFormatPolicy)
		require.True(t, isValidation(err, "6"), "%v", err)

		c := bob.g.framedContent(nil)
		c.ContentType = ContentTypeCommit
		c.Commit = &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: remove}}}
		rfaRejects(t, alice.g, rfaPublic(t, bob.g, c, FramedContentAuthData{ConfirmationTag: make([]byte, 32)}), ErrWireFormatPolicy)

		// The same proposal as a PrivateMessage is accepted.
		msg, err := bob.g.ProposeRemove(carol.g.OwnLeafIndex())
		require.NoError(t, err)
		require.Equal(t, WireFormatPrivateMessage, msg.WireFormat)
		rfaProcess(t, msg, alice)

		// An external join (a PublicMessage from a new member) still works.
		gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
		require.NoError(t, err)
		dave := newMember(t, alice.g.cs, "dave")
		_, commit, err := JoinExternal(transmit(t, gi), dave.cred, dave.sig, nil, nil)
		require.NoError(t, err)
		require.Equal(t, WireFormatPublicMessage, commit.WireFormat)
		res, err := carol.g.Process(transmit(t, commit))
		require.NoError(t, err)
		require.NotNil(t, res.Commit)
	})
	t.Run("public-only", func(t *testing.T) {
		alice, bob, carol := rfaGroup(t, &Config{Handshake: HandshakePublicOnly})
		c := bob.g.framedContent(nil)
		c.ContentType = ContentTypeProposal
		c.Proposal = &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: carol.g.OwnLeafIndex()}}
		err := rfaRejects(t, alice.g, rfaPrivate(t, bob.g, c, FramedContentAuthData{}, nil), ErrWireFormatPolicy)
		require.True(t, isValidation(err, "6"), "%v", err)
		// Application messages are PrivateMessages, as always.
		msg, err := bob.g.EncryptApplication([]byte("hi"), nil)
		require.NoError(t, err)
		rfaProcess(t, msg, alice)
	})
}
