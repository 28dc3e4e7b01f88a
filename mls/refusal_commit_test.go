package mls

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/keyschedule"
)

// Refusals of commits whose proposal list breaks RFC 9420, §12.2 and §12.4.
// Every commit is signed and MACed by a real member (alice), so the check
// under test is the one that fires; bob must refuse it with the precise
// error and keep his state byte-identical.

func removeOf(l LeafIndex) *Proposal {
	return &Proposal{Type: ProposalTypeRemove, Remove: &RemoveProposal{Removed: l}}
}

func addOf(kp *KeyPackage) *Proposal {
	return &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp}}
}

func externalPSKOf(cs CipherSuite, id string) *Proposal {
	return &Proposal{Type: ProposalTypePreSharedKey, PreSharedKey: &PreSharedKeyProposal{PSK: PreSharedKeyID{
		PSKType: keyschedule.PSKTypeExternal, PSKID: []byte(id), PSKNonce: keyschedule.NewPSKNonce(cs),
	}}}
}

// cachedUpdate has m send an Update proposal, caches it at every group in
// at, and returns its proposal and reference.
func cachedUpdate(t *testing.T, m *member, at ...*Group) (*Proposal, ProposalRef) {
	t.Helper()
	msg, err := m.g.ProposeUpdate()
	require.NoError(t, err)
	var ref ProposalRef
	for _, g := range at {
		res, err := g.Process(transmit(t, msg))
		require.NoError(t, err)
		ref = res.ProposalRef
	}
	return transmit(t, msg).PublicMessage.Content.Proposal, ref
}

func refTo(ref ProposalRef) ProposalOrRef {
	return ProposalOrRef{Type: ProposalOrRefReference, Reference: ref}
}

func TestRefuseCommitProposalList(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("two-adds-same-client", func(t *testing.T) {
		ms := threeMembers(t, nil)
		kp := newMember(t, cs, "dave").keyPackage(t, cs).KeyPackage
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(addOf(kp), addOf(kp))), "12.2")
	})
	t.Run("update-by-value", func(t *testing.T) {
		ms := threeMembers(t, nil)
		upd, _ := cachedUpdate(t, ms[0])
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(upd)), "12.2")
	})
	t.Run("committer-own-update", func(t *testing.T) {
		ms := threeMembers(t, nil)
		_, ref := cachedUpdate(t, ms[0], ms[1].g)
		c := &Commit{Proposals: []ProposalOrRef{refTo(ref)}}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, c), "12.2")
	})
	t.Run("two-updates-same-leaf", func(t *testing.T) {
		ms := threeMembers(t, nil)
		_, ref1 := cachedUpdate(t, ms[2], ms[1].g)
		_, ref2 := cachedUpdate(t, ms[2], ms[1].g)
		c := &Commit{Proposals: []ProposalOrRef{refTo(ref1), refTo(ref2)}}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, c), "12.2")
	})
	t.Run("update-and-remove-same-leaf", func(t *testing.T) {
		ms := threeMembers(t, nil)
		_, ref := cachedUpdate(t, ms[2], ms[1].g)
		c := &Commit{Proposals: []ProposalOrRef{refTo(ref), {Type: ProposalOrRefProposal, Proposal: removeOf(2)}}}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, c), "12.2")
	})
	t.Run("two-removes-same-leaf", func(t *testing.T) {
		ms := threeMembers(t, nil)
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(removeOf(2), removeOf(2))), "12.2")
	})
	t.Run("remove-committer", func(t *testing.T) {
		ms := threeMembers(t, nil)
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(removeOf(0))), "12.2")
	})
	t.Run("same-psk-twice", func(t *testing.T) {
		ms := threeMembers(t, nil)
		a, b := externalPSKOf(cs, "k"), externalPSKOf(cs, "k")
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(a, b)), "12.2")
	})
	t.Run("too-many-psks", func(t *testing.T) {
		// Config.Limits bounds the PSKs of a commit (each costs a lookup
		// and a key-schedule step).
		ms := threeMembers(t, nil)
		ms[1].g.cfg.Limits.MaxPSKsPerCommit = 1
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(externalPSKOf(cs, "a"), externalPSKOf(cs, "b"))), ErrLimit)
	})
	t.Run("reinit-with-others", func(t *testing.T) {
		ms := threeMembers(t, nil)
		ri := NewReInitProposal(ReInitProposal{GroupID: []byte("next"), Version: MLS10, CipherSuite: cs})
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(&ri, removeOf(2))), "12.2")
	})
	t.Run("external-init-in-member-commit", func(t *testing.T) {
		ms := threeMembers(t, nil)
		ei := &Proposal{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInitProposal{KEMOutput: randomBytes(32)}}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(ei)), "12.2")
	})
	t.Run("two-group-context-extensions", func(t *testing.T) {
		ms := threeMembers(t, nil)
		gce := func() *Proposal {
			return &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{}}
		}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(gce(), gce())), "12.2")
	})
	t.Run("missing-path", func(t *testing.T) {
		ms := threeMembers(t, nil)
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(removeOf(2))), "12.4")
	})
	t.Run("empty-commit-without-path", func(t *testing.T) {
		ms := threeMembers(t, nil)
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, &Commit{}), "12.4")
	})
	t.Run("unknown-reference", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := &Commit{Proposals: []ProposalOrRef{refTo(make(ProposalRef, cs.HashSize()))}}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, c), ErrNotFound)
	})
	t.Run("own-commit-processed", func(t *testing.T) {
		ms := threeMembers(t, nil)
		refused(t, ms[1].g, forgeCommit(t, ms[1].g, WireFormatPublicMessage, byValue(externalPSKOf(cs, "k"))), "12.4.2")
	})
	t.Run("confirmation-tag", func(t *testing.T) {
		// A commit whose every other part is valid: only the confirmation
		// tag is wrong.
		ms := threeMembers(t, nil)
		pc, err := ms[0].g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		bad := retagCommit(t, ms[0].g, pc, func(*FramedContent) {})
		bad.PublicMessage.Auth.ConfirmationTag[0] ^= 1
		bad = sealAs(t, ms[0].g, ms[0].g.sigPriv, WireFormatPublicMessage, bad.PublicMessage.Content, bad.PublicMessage.Auth.ConfirmationTag)
		refused(t, ms[1].g, bad, ErrDecryption)
		// The untouched commit is accepted.
		_, err = ms[1].g.Process(transmit(t, pc.Commit))
		require.NoError(t, err)
	})
}
