package mls

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/internal/wire"
)

// Refusals of messages whose framing or sender breaks RFC 9420, §6. Each
// is signed, MACed or encrypted with real keys of the epoch.

func TestRefuseFraming(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	const blank = 3 // in a group of three, leaf 3 is blank
	app := func(g *Group, sender uint32) FramedContent {
		c := g.framedContent(nil)
		c.Sender.Index = sender
		c.ContentType = ContentTypeApplication
		c.ApplicationData = []byte("hello")
		return c
	}
	t.Run("wire-format", func(t *testing.T) {
		ms := threeMembers(t, nil)
		gi, err := ms[0].g.GroupInfo(nil)
		require.NoError(t, err)
		refused(t, ms[1].g, gi, ErrUnsupported)
	})
	t.Run("inactive", func(t *testing.T) {
		ms := threeMembers(t, nil)
		pc, err := ms[0].g.Commit(&CommitOptions{Remove: []LeafIndex{1}})
		require.NoError(t, err)
		res, err := ms[1].g.Process(transmit(t, pc.Commit))
		require.NoError(t, err)
		require.NoError(t, ms[1].g.Merge(res.Commit))
		require.NoError(t, ms[0].g.MergePendingCommit(pc))
		msg, err := ms[0].g.EncryptApplication([]byte("hi"), nil)
		require.NoError(t, err)
		refused(t, ms[1].g, msg, ErrInactive)
	})
	t.Run("application-as-public-message", func(t *testing.T) {
		ms := threeMembers(t, nil)
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, app(ms[0].g, 0)), "6.2")
	})
	t.Run("commit-from-external-sender", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.Sender = Sender{Type: SenderTypeExternal}
		c.ContentType = ContentTypeCommit
		c.Commit = &Commit{}
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, c), "6")
	})
	t.Run("public-blank-sender", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.Sender.Index = blank
		c.ContentType = ContentTypeProposal
		c.Proposal = externalPSKOf(cs, "k")
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, c), "6.1")
	})
	t.Run("private-blank-sender", func(t *testing.T) {
		// §6.3.2: the leaf index of the sender data must name a non-blank
		// leaf.
		ms := threeMembers(t, nil)
		g := ms[0].g
		pt := privateContent(t, g, g.sigPriv, app(g, blank))
		refused(t, ms[1].g, sealPrivateRaw(t, g, blank, ContentTypeApplication, nil, pt, nil), "6.1")
	})
	t.Run("external-sender-without-extension", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.Sender = Sender{Type: SenderTypeExternal}
		c.ContentType = ContentTypeProposal
		c.Proposal = removeOf(2)
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, c), "12.1.8")
	})
	t.Run("new-member-commit-without-path", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.Sender = Sender{Type: SenderTypeNewMemberCommit}
		c.ContentType = ContentTypeCommit
		c.Commit = &Commit{}
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, c), "12.4.3.2")
	})
	t.Run("nonzero-padding", func(t *testing.T) {
		// §6.3.1: padding must be all zero.
		ms := threeMembers(t, nil)
		g := ms[0].g
		pt := append(privateContent(t, g, g.sigPriv, app(g, 0)), 0, 0, 1)
		refused(t, ms[1].g, sealPrivateRaw(t, g, 0, ContentTypeApplication, nil, pt, nil), ErrMalformed)
	})
	t.Run("content-does-not-parse", func(t *testing.T) {
		ms := threeMembers(t, nil)
		g := ms[0].g
		refused(t, ms[1].g, sealPrivateRaw(t, g, 0, ContentTypeApplication, nil, []byte{0xff}, nil), ErrMalformed)
	})
	t.Run("sender-data-size", func(t *testing.T) {
		ms := threeMembers(t, nil)
		g := ms[0].g
		pt := privateContent(t, g, g.sigPriv, app(g, 0))
		refused(t, ms[1].g, sealPrivateRaw(t, g, 0, ContentTypeApplication, nil, pt, make([]byte, 11)), ErrMalformed)
	})
	t.Run("past-epoch-handshake", func(t *testing.T) {
		ms := threeMembers(t, nil)
		old := forgeProposal(t, ms[0].g, WireFormatPrivateMessage, externalPSKOf(cs, "k"))
		pc, err := ms[0].g.Commit(nil)
		require.NoError(t, err)
		deliverCommit(t, ms[0], pc, ms)
		refused(t, ms[1].g, old, ErrWrongEpoch, ErrEpochTooOld)
	})
	t.Run("past-epoch-blank-sender", func(t *testing.T) {
		ms := threeMembers(t, nil)
		g := ms[0].g
		pt := privateContent(t, g, g.sigPriv, app(g, blank))
		old := sealPrivateRaw(t, g, blank, ContentTypeApplication, nil, pt, nil)
		pc, err := g.Commit(nil)
		require.NoError(t, err)
		deliverCommit(t, ms[0], pc, ms)
		refused(t, ms[1].g, old, ErrDecryption)
	})
	t.Run("past-epoch-bad-signature", func(t *testing.T) {
		ms := threeMembers(t, nil)
		g := ms[0].g
		pt := privateContent(t, g, ms[2].sig, app(g, 0)) // signed by carol for alice's leaf
		old := sealPrivateRaw(t, g, 0, ContentTypeApplication, nil, pt, nil)
		pc, err := g.Commit(nil)
		require.NoError(t, err)
		deliverCommit(t, ms[0], pc, ms)
		refused(t, ms[1].g, old, ErrInvalidSignature)
	})
	t.Run("private-bad-signature", func(t *testing.T) {
		ms := threeMembers(t, nil)
		g := ms[0].g
		pt := privateContent(t, g, ms[2].sig, app(g, 0))
		refused(t, ms[1].g, sealPrivateRaw(t, g, 0, ContentTypeApplication, nil, pt, nil), ErrInvalidSignature)
	})
	t.Run("public-bad-signature", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.ContentType = ContentTypeProposal
		c.Proposal = externalPSKOf(cs, "k")
		refused(t, ms[1].g, sealAs(t, ms[0].g, ms[2].sig, WireFormatPublicMessage, c, nil), ErrInvalidSignature)
	})
	t.Run("membership-tag", func(t *testing.T) {
		ms := threeMembers(t, nil)
		msg := forgeProposal(t, ms[0].g, WireFormatPublicMessage, externalPSKOf(cs, "k"))
		msg.PublicMessage.MembershipTag[0] ^= 1
		refused(t, ms[1].g, msg, ErrDecryption)
	})
}

func TestRefuseSenderTypes(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("new-member-commit-sending-a-proposal", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.Sender = Sender{Type: SenderTypeNewMemberCommit}
		c.ContentType = ContentTypeProposal
		c.Proposal = externalPSKOf(cs, "k")
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, c), "12.4.3.2")
	})
	t.Run("new-member-proposal-not-add", func(t *testing.T) {
		ms := threeMembers(t, nil)
		c := ms[0].g.framedContent(nil)
		c.Sender = Sender{Type: SenderTypeNewMemberProposal}
		c.ContentType = ContentTypeProposal
		c.Proposal = removeOf(2)
		refused(t, ms[1].g, forge(t, ms[0].g, WireFormatPublicMessage, c), "12.1.8")
	})
	t.Run("external-signer-disallowed-type", func(t *testing.T) {
		// Our own ExternalSigner refuses to send what receivers would
		// refuse (§12.1.8).
		ms := threeMembers(t, nil)
		key, err := cs.GenerateSignatureKey()
		require.NoError(t, err)
		ds := &ExternalSigner{Key: key}
		_, err = ds.Propose(ms[0].g.GroupID(), ms[0].g.Epoch(), &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{}}, nil)
		requireMatches(t, err, "12.1.8")
	})
	t.Run("merge-stale-staged-commit", func(t *testing.T) {
		// Two commits of the same epoch can never both be merged (§14).
		ms := threeMembers(t, nil)
		pc0, err := ms[0].g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		pc2, err := ms[2].g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		r0, err := ms[1].g.Process(transmit(t, pc0.Commit))
		require.NoError(t, err)
		r2, err := ms[1].g.Process(transmit(t, pc2.Commit))
		require.NoError(t, err)
		require.NoError(t, ms[1].g.Merge(r0.Commit))
		before := stateBytes(t, ms[1].g)
		requireMatches(t, ms[1].g.Merge(r2.Commit), ErrWrongEpoch)
		require.Equal(t, before, stateBytes(t, ms[1].g))
	})
	t.Run("merge-after-removal", func(t *testing.T) {
		ms := threeMembers(t, nil)
		pcA, err := ms[0].g.Commit(&CommitOptions{Remove: []LeafIndex{1}})
		require.NoError(t, err)
		pcC, err := ms[2].g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		rA, err := ms[1].g.Process(transmit(t, pcA.Commit))
		require.NoError(t, err)
		rC, err := ms[1].g.Process(transmit(t, pcC.Commit))
		require.NoError(t, err)
		require.NoError(t, ms[1].g.Merge(rA.Commit))
		require.False(t, ms[1].g.Active())
		requireMatches(t, ms[1].g.Merge(rC.Commit), ErrWrongEpoch)
	})
}

func TestRefuseAuthenticatedContentTrailingData(t *testing.T) {
	ms := threeMembers(t, nil)
	msg := forgeProposal(t, ms[0].g, WireFormatPublicMessage, externalPSKOf(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, "k"))
	pm := msg.PublicMessage
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: pm.Content, Auth: pm.Auth}
	data, err := wire.Marshal(ac.marshal)
	require.NoError(t, err)
	_, err = ParseAuthenticatedContent(data)
	require.NoError(t, err)
	_, err = ParseAuthenticatedContent(append(data, 0))
	requireMatches(t, err, ErrMalformed)
}
