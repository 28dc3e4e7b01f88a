package mls

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommitBeforeSending: a member that holds valid proposals of the
// current epoch must commit before sending application data (RFC 9420,
// §12.4); today's code sent silently. Proposals a commit would leave out
// (a non-member's, with no policy) do not count.
func TestCommitBeforeSending(t *testing.T) {
	ms, ds := rfaExternalGroup(t, nil)
	alice, bob, carol := ms[0], ms[1], ms[2]

	// An outsider's proposal, which no policy accepts: sending is allowed.
	ext, err := ds.Propose(alice.g.GroupID(), alice.g.Epoch(), &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: carol.g.OwnLeafIndex()}}, nil)
	require.NoError(t, err)
	rfaProcess(t, ext, alice, carol)
	_, err = alice.g.EncryptApplication([]byte("still fine"), nil)
	require.NoError(t, err)

	// Bob proposes to remove carol: alice and carol must commit first.
	prop, err := bob.g.ProposeRemove(carol.g.OwnLeafIndex())
	require.NoError(t, err)
	rfaProcess(t, prop, alice, carol)
	for _, m := range []*member{alice, bob, carol} {
		before := rfaMustState(t, m.g)
		_, err = m.g.EncryptApplication([]byte("secret"), nil)
		require.ErrorIs(t, err, ErrPendingProposals, m.name)
		assert.True(t, bytes.Equal(before, rfaMustState(t, m.g)), "%s: a refused send changed the state", m.name)
	}

	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	assert.Equal(t, []LeafIndex{carol.g.OwnLeafIndex()}, pc.Staged().Removed)
	// Still pending until the commit is merged.
	_, err = alice.g.EncryptApplication([]byte("secret"), nil)
	require.ErrorIs(t, err, ErrPendingProposals)
	deliverCommit(t, alice, pc, ms)
	agree(t, []*member{alice, bob})
}
