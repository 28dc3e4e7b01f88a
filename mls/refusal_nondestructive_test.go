package mls

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// This file holds the regression tests for non-destructive processing
// (RFC 9420, §9.2 deletes a key once used, but only for a message that is
// accepted; §12.4.2: an invalid commit must leave the group as it was).

// TestPrivateCommitInvalidContentKeepsKey: a PrivateMessage commit with a
// valid signature but invalid content (it removes its committer, §12.2)
// consumed its handshake key before the content was checked, so re-sending
// the same bytes gave ErrKeyUsed instead of the validation error.
func TestPrivateCommitInvalidContentKeepsKey(t *testing.T) {
	cfg := &Config{Handshake: HandshakePrivate}
	alice, bob, _ := rfaGroup(t, cfg)

	c := bob.g.framedContent(nil)
	c.ContentType = ContentTypeCommit
	c.Commit = &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal,
		Proposal: &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: bob.g.OwnLeafIndex()}}}}}
	msg := rfaPrivate(t, bob.g, c, FramedContentAuthData{ConfirmationTag: make([]byte, 32)}, nil)
	for range 3 {
		err := rfaRejects(t, alice.g, msg, &ValidationError{})
		require.True(t, isValidation(err, "12.2"), "%v", err)
		require.NotErrorIs(t, err, ErrKeyUsed)
	}

	// The same for a proposal: a Remove of a blank leaf (§12.1.3).
	c = bob.g.framedContent(nil)
	c.ContentType = ContentTypeProposal
	c.Proposal = &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: 3}}
	msg = rfaPrivate(t, bob.g, c, FramedContentAuthData{}, nil)
	for range 2 {
		err := rfaRejects(t, alice.g, msg, &ValidationError{})
		require.True(t, isValidation(err, "12.1.3"), "%v", err)
	}
}

// TestPrivateMessageAlteredADLeavesState: a PrivateMessage whose
// authenticated_data was altered still opens its sender data (whose AAD
// does not cover it), and started the sender's ratchets before the content
// failed to decrypt: the encoded state changed. It must stay byte-identical,
// and the genuine message must still be read afterwards.
func TestPrivateMessageAlteredADLeavesState(t *testing.T) {
	alice, bob, _ := rfaGroup(t, nil)
	msg, err := bob.g.EncryptApplication([]byte("hello"), []byte("ad"))
	require.NoError(t, err)
	msg = transmit(t, msg)

	bad := *msg
	pm := *msg.PrivateMessage
	pm.AuthenticatedData = []byte("AD")
	bad.PrivateMessage = &pm
	for range 2 {
		rfaRejects(t, alice.g, transmit(t, &bad), ErrDecryption)
	}
	res, err := alice.g.Process(msg)
	require.NoError(t, err)
	require.True(t, bytes.Equal(res.ApplicationData, []byte("hello")))
	rfaRejects(t, alice.g, msg, ErrKeyUsed)
}
