package mls

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
)

// Helpers that build messages a misbehaving member or outsider could send:
// correctly signed, MACed and encrypted with the real epoch keys, but with
// arbitrary content, so that a refusal test reaches the check it is about
// instead of being stopped by a bad signature or tag.

// sealAs signs c with signer over g's GroupContext and frames it as wf with
// g's epoch keys (membership tag for a member's PublicMessage, encryption
// for a PrivateMessage). For a commit, confTag is the confirmation tag; if
// nil, a tag of the right length that will not verify is used, which is
// enough for every check that runs before the confirmation tag's.
func sealAs(t testing.TB, g *Group, signer *hpke.SignaturePrivateKey, wf WireFormat, c FramedContent, confTag []byte) *MLSMessage {
	t.Helper()
	ac := &AuthenticatedContent{WireFormat: wf, Content: c}
	if c.ContentType == ContentTypeCommit {
		if confTag == nil {
			confTag = bytes.Repeat([]byte{0xc7}, g.cs.HashSize())
		}
		ac.Auth.ConfirmationTag = confTag
	}
	require.NoError(t, signContent(g.cs, signer, ac, g.state.ctxBytes))
	msg := &MLSMessage{Version: MLS10, WireFormat: wf}
	var err error
	if wf == WireFormatPublicMessage {
		msg.PublicMessage, err = g.state.framer.protectPublic(ac)
	} else {
		msg.PrivateMessage, err = g.state.framer.protectPrivate(ac, g.padding)
	}
	require.NoError(t, err)
	return msg
}

// forge is sealAs with the key of g's own member, as g's member sending c.
func forge(t testing.TB, g *Group, wf WireFormat, c FramedContent) *MLSMessage {
	t.Helper()
	return sealAs(t, g, g.sigPriv, wf, c, nil)
}

// forgeProposal is a proposal p sent by g's member as wf, with none of the
// sender-side checks.
func forgeProposal(t testing.TB, g *Group, wf WireFormat, p *Proposal) *MLSMessage {
	t.Helper()
	c := g.framedContent(nil)
	c.ContentType = ContentTypeProposal
	c.Proposal = p
	return forge(t, g, wf, c)
}

// forgeCommit is a commit sent by g's member as wf, with an unverifiable
// confirmation tag (see sealAs).
func forgeCommit(t testing.TB, g *Group, wf WireFormat, commit *Commit) *MLSMessage {
	t.Helper()
	c := g.framedContent(nil)
	c.ContentType = ContentTypeCommit
	c.Commit = commit
	return forge(t, g, wf, c)
}

// byValue returns a commit covering ps by value.
func byValue(ps ...*Proposal) *Commit {
	c := &Commit{}
	for _, p := range ps {
		c.Proposals = append(c.Proposals, ProposalOrRef{Type: ProposalOrRefProposal, Proposal: p})
	}
	return c
}

// retagCommit takes a commit g made as a PublicMessage (not yet merged),
// lets edit change its content, and signs and MACs it again with g's keys,
// keeping its confirmation tag (which no longer verifies; the checks
// before it are what the test is about unless edit leaves the commit as it
// was).
func retagCommit(t testing.TB, g *Group, pc *PendingCommit, edit func(c *FramedContent)) *MLSMessage {
	t.Helper()
	require.Equal(t, WireFormatPublicMessage, pc.Commit.WireFormat)
	m := transmit(t, pc.Commit) // a deep copy
	c := m.PublicMessage.Content
	edit(&c)
	return sealAs(t, g, g.sigPriv, WireFormatPublicMessage, c, m.PublicMessage.Auth.ConfirmationTag)
}

// stateBytes returns g's encoded state, the measure of "nothing changed".
func stateBytes(t testing.TB, g *Group) []byte {
	t.Helper()
	b, err := g.MarshalState()
	require.NoError(t, err)
	return b
}

// refused processes msg at g after a wire round trip and requires that it
// is rejected with an error matching every one of want (a sentinel, or a
// string naming the RFC section of a *ValidationError), and that g's
// encoded state is byte-identical afterwards. It returns the error.
func refused(t testing.TB, g *Group, msg *MLSMessage, want ...any) error {
	t.Helper()
	before := stateBytes(t, g)
	data, err := msg.Bytes()
	require.NoError(t, err, "encoding the forged message")
	m, err := ParseMessage(data)
	require.NoError(t, err, "parsing the forged message")
	res, err := g.Process(m)
	require.Error(t, err, "forged message accepted: %+v", res)
	requireMatches(t, err, want...)
	require.True(t, bytes.Equal(before, stateBytes(t, g)), "the refused message changed the group's state")
	return err
}

// requireMatches requires err to match every one of want: an error is
// matched with errors.Is, a string with a *ValidationError of that
// section, an anyOf with errors.Is of one of its errors, a notErr with
// !errors.Is.
func requireMatches(t testing.TB, err error, want ...any) {
	t.Helper()
	require.True(t, matchable(err), "error not matchable: %v", err)
	for _, w := range want {
		switch w := w.(type) {
		case error:
			require.ErrorIs(t, err, w)
		case anyOf:
			require.True(t, slices.ContainsFunc(w, func(e error) bool { return errors.Is(err, e) }), "%v matches none of %v", err, w)
		case notErr:
			require.NotErrorIs(t, err, w.err, "the refusal came from a later check")
		case string:
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "want a ValidationError of §%s, got %v", w, err)
			require.Equal(t, w, ve.Section, "section of %v", err)
		default:
			t.Fatalf("requireMatches: bad want %T", w)
		}
	}
}

// anyOf matches an error that matches one of its errors (see
// requireMatches): for a rule that more than one check enforces, the
// first of which fires.
type anyOf []error

// notErr matches an error that does not match err (see requireMatches):
// to tell the check under test from a later one with the same section.
type notErr struct{ err error }

// threeMembers returns alice, bob and carol in a group of suite 1 made by
// alice, all at epoch 1; cfg, if non-nil, is every member's Config.
func threeMembers(t testing.TB, cfg *Config) []*member {
	t.Helper()
	return m6Group(t, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, nil, cfg, nil, "alice", "bob", "carol")
}

// sealPrivateRaw encrypts plaintext (a PrivateMessageContent with its
// padding, possibly malformed) as a PrivateMessage of content type ct from
// leaf, with g's epoch keys: the key of leaf's ratchet in g's secret tree
// and the real sender data key. senderData, if non-nil, replaces the
// encoded SenderData.
func sealPrivateRaw(t testing.TB, g *Group, leaf uint32, ct ContentType, ad, plaintext, senderData []byte) *MLSMessage {
	t.Helper()
	f := g.state.framer
	groupID, epoch := g.state.ctx.GroupID, g.state.ctx.Epoch
	aad, err := privateContentAAD(groupID, epoch, ct, ad)
	require.NoError(t, err)
	key, err := f.secretTree.NextKey(leaf, ratchetFor(ct))
	require.NoError(t, err)
	var guard [reuseGuardSize]byte
	ciphertext, err := f.cs.AEADSeal(key.Key, applyReuseGuard(key.Nonce, guard), aad, plaintext)
	require.NoError(t, err)
	if senderData == nil {
		gen := key.Generation
		senderData = []byte{byte(leaf >> 24), byte(leaf >> 16), byte(leaf >> 8), byte(leaf), byte(gen >> 24), byte(gen >> 16), byte(gen >> 8), byte(gen), 0, 0, 0, 0}
	}
	sdKey, sdNonce := keyschedule.SenderDataKey(f.cs, f.senderDataSecret, ciphertext)
	sdAAD, err := senderDataAAD(groupID, epoch, ct)
	require.NoError(t, err)
	enc, err := f.cs.AEADSeal(sdKey, sdNonce, sdAAD, senderData)
	require.NoError(t, err)
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: &PrivateMessage{
		GroupID: groupID, Epoch: epoch, ContentType: ct, AuthenticatedData: ad,
		EncryptedSenderData: enc, Ciphertext: ciphertext,
	}}
}

// privateContent returns the encoded PrivateMessageContent of c signed by
// signer for g's epoch, without padding.
func privateContent(t testing.TB, g *Group, signer *hpke.SignaturePrivateKey, c FramedContent) []byte {
	t.Helper()
	ac := &AuthenticatedContent{WireFormat: WireFormatPrivateMessage, Content: c}
	if c.ContentType == ContentTypeCommit {
		ac.Auth.ConfirmationTag = bytes.Repeat([]byte{0xc7}, g.cs.HashSize())
	}
	require.NoError(t, signContent(g.cs, signer, ac, g.state.ctxBytes))
	b, err := wire.Marshal(func(b *cryptobyte.Builder) {
		c.marshalBody(b)
		ac.Auth.marshal(b, c.ContentType)
	})
	require.NoError(t, err)
	return b
}

// resealWelcome opens w as the holder of kp would, lets edit change the
// GroupInfo and GroupSecrets, signs the GroupInfo again with signer (the
// key of its signer leaf, as a real member would) and encrypts both again
// with the same welcome key and kp's init key. It handles Welcomes without
// PSKs.
func resealWelcome(t testing.TB, w *MLSMessage, kp *KeyPackagePrivate, signer *hpke.SignaturePrivateKey, edit func(gi *GroupInfo, gs *GroupSecrets)) *MLSMessage {
	t.Helper()
	return resealWelcomeSuffix(t, w, kp, signer, edit, nil)
}

// resealWelcomeSuffix is resealWelcome that appends suffix to the encoded
// GroupSecrets before encrypting them.
func resealWelcomeSuffix(t testing.TB, w *MLSMessage, kp *KeyPackagePrivate, signer *hpke.SignaturePrivateKey, edit func(gi *GroupInfo, gs *GroupSecrets), suffix []byte) *MLSMessage {
	t.Helper()
	wel := transmit(t, w).Welcome
	cs := wel.CipherSuite
	gs, err := decryptGroupSecrets(wel, kp)
	require.NoError(t, err)
	require.Empty(t, gs.PSKs, "resealWelcome handles Welcomes without PSKs")
	joiner, err := keyschedule.NewJoinerSecret(cs, gs.JoinerSecret)
	require.NoError(t, err)
	pskSecret, err := keyschedule.PSKSecret(cs, nil)
	require.NoError(t, err)
	ws := joiner.WelcomeSecret(pskSecret)
	gi, err := decryptGroupInfo(cs, wel, ws)
	require.NoError(t, err)
	edit(gi, gs)
	require.NoError(t, gi.sign(cs, signer))
	giBytes, err := wire.Marshal(gi.marshal)
	require.NoError(t, err)
	wel.EncryptedGroupInfo, err = cs.AEADSeal(ws.Key(), ws.Nonce(), nil, giBytes)
	require.NoError(t, err)
	ref, err := kp.KeyPackage.Ref()
	require.NoError(t, err)
	gsBytes, err := wire.Marshal(gs.marshal)
	require.NoError(t, err)
	gsBytes = append(gsBytes, suffix...)
	for i := range wel.Secrets {
		if bytes.Equal(wel.Secrets[i].NewMember, ref) {
			e := &wel.Secrets[i].EncryptedGroupSecrets
			e.KEMOutput, e.Ciphertext, err = cs.EncryptWithLabel(kp.KeyPackage.InitKey, "Welcome", wel.EncryptedGroupInfo, gsBytes)
			require.NoError(t, err)
		}
	}
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: wel}
}

// resignGroupInfo returns a copy of the GroupInfo message gi after edit,
// signed again with signer.
func resignGroupInfo(t testing.TB, gi *MLSMessage, signer *hpke.SignaturePrivateKey, edit func(gi *GroupInfo)) *MLSMessage {
	t.Helper()
	m := transmit(t, gi)
	cs := m.GroupInfo.GroupContext.CipherSuite
	edit(m.GroupInfo)
	require.NoError(t, m.GroupInfo.sign(cs, signer))
	return m
}
