package mls

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/treekem"
)

func TestKeyPackageValidate(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	bob := newMember(t, cs, "bob")
	fresh := func() *KeyPackage {
		kp, err := GenerateKeyPackage(cs, bob.cred, bob.sig, nil)
		require.NoError(t, err)
		return transmit(t, &MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp.KeyPackage}).KeyPackage
	}
	require.NoError(t, fresh().Validate(nil))

	t.Run("bad signature", func(t *testing.T) {
		kp := fresh()
		kp.Signature[0] ^= 1
		require.ErrorIs(t, kp.Validate(nil), ErrInvalidSignature)
	})
	t.Run("init key equals encryption key", func(t *testing.T) {
		kp := fresh()
		kp.InitKey = append([]byte(nil), kp.LeafNode.EncryptionKey...)
		require.NoError(t, kp.sign(bob.sig)) // correctly signed: the key check fires
		var ve *ValidationError
		require.ErrorAs(t, kp.Validate(nil), &ve)
		assert.Equal(t, "10.1", ve.Section)
	})
	t.Run("expired", func(t *testing.T) {
		later := time.Now().Add(2 * DefaultMaxLeafLifetime)
		err := fresh().Validate(&Config{Now: func() time.Time { return later }})
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, "7.3", ve.Section)
	})
	t.Run("credential hook", func(t *testing.T) {
		errNo := errors.New("unknown user")
		err := fresh().Validate(&Config{ValidateCredential: func(c *Credential, _ []byte) error { return errNo }})
		require.ErrorIs(t, err, errNo)
		var ve *ValidationError
		require.ErrorAs(t, err, &ve)
	})
	t.Run("nil", func(t *testing.T) {
		var kp *KeyPackage
		require.ErrorIs(t, kp.Validate(nil), ErrMalformed)
	})
}

func TestMemberLookup(t *testing.T) {
	alice, bob, carol := rfaGroup(t, nil)
	g := alice.g

	m, ok := g.Member(bob.g.OwnLeafIndex())
	require.True(t, ok)
	assert.Equal(t, "bob", string(m.Credential.Identity))
	_, ok = g.Member(LeafIndex(1 << 31))
	assert.False(t, ok, "an index past the tree is no member")

	got := g.MembersByIdentity([]byte("carol"))
	require.Len(t, got, 1)
	assert.Equal(t, carol.g.OwnLeafIndex(), got[0].Index)
	assert.Equal(t, carol.sig.PublicKey(), got[0].SignatureKey)
	assert.Empty(t, g.MembersByIdentity([]byte("mallory")))
	assert.Len(t, g.MembersByCredential(alice.cred), 1)
}

func TestGroupInfoOptionsAndSuite(t *testing.T) {
	alice, _, _ := rfaGroup(t, nil)
	for _, tc := range []struct {
		opts           *GroupInfoOptions
		tree, external bool
	}{
		{nil, true, false},
		{&GroupInfoOptions{ExternalPub: true}, true, true},
		{&GroupInfoOptions{RatchetTreeOutOfBand: true}, false, false},
		{&GroupInfoOptions{RatchetTreeOutOfBand: true, ExternalPub: true}, false, true},
	} {
		msg, err := alice.g.GroupInfo(tc.opts)
		require.NoError(t, err)
		msg = transmit(t, msg)
		_, hasTree := findExtension(msg.GroupInfo.Extensions, ExtensionRatchetTree)
		_, hasPub := findExtension(msg.GroupInfo.Extensions, ExtensionExternalPub)
		assert.Equal(t, tc.tree, hasTree, "%+v", tc.opts)
		assert.Equal(t, tc.external, hasPub, "%+v", tc.opts)
		cs, ok := msg.CipherSuite()
		require.True(t, ok)
		assert.Equal(t, alice.g.CipherSuite(), cs)
	}
	app, err := alice.g.EncryptApplication([]byte("x"), nil)
	require.NoError(t, err)
	_, ok := app.CipherSuite()
	assert.False(t, ok, "a group message does not carry its suite")
}

// TestMalformedSignatureKeyNamed: a KeyPackage whose signature key is a
// compressed P-256 point (which some implementations send) is reported as
// malformed, naming the field, not as a bad signature.
func TestMalformedSignatureKeyNamed(t *testing.T) {
	cs := MLS_128_DHKEMP256_AES128GCM_SHA256_P256
	bob := newMember(t, cs, "bob")
	kp, err := GenerateKeyPackage(cs, bob.cred, bob.sig, nil)
	require.NoError(t, err)
	pub := kp.KeyPackage.LeafNode.SignatureKey
	require.Len(t, pub, 65)
	compressed := append([]byte{2 + pub[64]&1}, pub[1:33]...)
	kp.KeyPackage.LeafNode.SignatureKey = compressed
	err = kp.KeyPackage.Validate(nil)
	require.ErrorIs(t, err, ErrMalformed)
	assert.NotErrorIs(t, err, ErrInvalidSignature)
	assert.Contains(t, err.Error(), "signature_key")
}

// TestMalformedMatchesAcrossPackages: bytes that fail to decode in any
// layer match mls.ErrMalformed.
func TestMalformedMatchesAcrossPackages(t *testing.T) {
	_, err := treekem.ParseLeafNode([]byte{0xff})
	require.ErrorIs(t, err, treekem.ErrMalformed)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = ParseMessage([]byte{0, 1})
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorIs(t, err, treekem.ErrMalformed)
}

// TestMessageWrappers: a bare Welcome, GroupInfo or KeyPackage (as
// ParseWelcome and friends return them) is wrapped for Join, JoinExternal
// and the wire without building an MLSMessage by hand.
func TestMessageWrappers(t *testing.T) {
	alice, _, _ := rfaGroup(t, nil)
	cs := alice.g.CipherSuite()
	dave := newMember(t, cs, "dave")
	kp := dave.keyPackage(t, cs)

	kpBytes, err := kp.KeyPackage.Message().Bytes()
	require.NoError(t, err)
	m, err := ParseMessage(kpBytes)
	require.NoError(t, err)
	require.NotNil(t, m.KeyPackage)

	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{m.KeyPackage}})
	require.NoError(t, err)
	require.NoError(t, alice.g.MergePendingCommit(pc))
	raw, err := pc.Welcome.Welcome.Bytes()
	require.NoError(t, err)
	w, err := ParseWelcome(raw)
	require.NoError(t, err)
	dave.g, err = Join(w.Message(), kp, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, alice.g.EpochAuthenticator(), dave.g.EpochAuthenticator())

	gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	rawGI, err := gi.GroupInfo.Bytes()
	require.NoError(t, err)
	parsed, err := ParseGroupInfo(rawGI)
	require.NoError(t, err)
	cs2, ok := parsed.Message().CipherSuite()
	require.True(t, ok)
	erin := newMember(t, cs2, "erin")
	_, commit, err := JoinExternal(parsed.Message(), erin.cred, erin.sig, nil, nil)
	require.NoError(t, err)
	require.NotNil(t, commit)
}
