package mls

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRefuseReInitDuplicateExtensions: a ReInit whose extensions list a type
// twice was merged, after which the group could neither send nor be
// re-created (RFC 9420, §13.4, §11.2). It is refused by reference and by
// value, and the proposer cannot build one.
func TestRefuseReInitDuplicateExtensions(t *testing.T) {
	alice, bob, _ := rfaGroup(t, nil)
	r := NewReInitProposal(ReInitProposal{CipherSuite: alice.g.cs, Extensions: []Extension{
		{Type: 0xff01, Data: []byte("a")}, {Type: 0xff01, Data: []byte("b")},
	}})

	err := rfaRejects(t, alice.g, rawProposal(t, bob.g, &r), &ValidationError{})
	require.True(t, isValidation(err, "13.4"), "%v", err)

	c := bob.g.framedContent(nil)
	c.ContentType = ContentTypeCommit
	c.Commit = &Commit{Proposals: []ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: &r}}}
	err = rfaRejects(t, alice.g, rfaPublic(t, bob.g, c, FramedContentAuthData{ConfirmationTag: make([]byte, 32)}), &ValidationError{})
	require.True(t, isValidation(err, "13.4"), "%v", err)

	_, err = bob.g.ProposeReInit(*r.ReInit)
	require.True(t, isValidation(err, "13.4"), "%v", err)
	_, err = bob.g.Commit(&CommitOptions{Proposals: []Proposal{r}})
	require.True(t, isValidation(err, "13.4"), "%v", err)
	require.Nil(t, bob.g.PendingReInit())
}
