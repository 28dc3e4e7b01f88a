package mls

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Refusals of Welcomes and GroupInfos that break RFC 9420, §12.4.3. The
// GroupInfo is signed again by its real signer and the Welcome encrypted
// again with the real keys, so the check under test is the one that fires.

// welcomeFixture is alice and bob in a group, alice's Welcome adding dave
// (leaf 2, so leaf 3 is blank), and dave's KeyPackage.
func welcomeFixture(t *testing.T, gopts *GroupOptions, kpOpts *KeyPackageOptions) (alice *member, w *MLSMessage, kp *KeyPackagePrivate) {
	t.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	var o func(int) *KeyPackageOptions
	if kpOpts != nil {
		o = func(int) *KeyPackageOptions { return kpOpts }
	}
	ms := m6Group(t, cs, gopts, nil, o, "alice", "bob")
	dave := newMember(t, cs, "dave")
	kpp, err := GenerateKeyPackage(cs, dave.cred, dave.sig, kpOpts)
	require.NoError(t, err)
	pc, err := ms[0].g.Commit(&CommitOptions{Add: []*KeyPackage{kpp.KeyPackage}, ForcePath: true})
	require.NoError(t, err)
	return ms[0], pc.Welcome, kpp
}

func dupExtensions() []Extension {
	return []Extension{{Type: ExtensionApplicationID, Data: []byte{}}, {Type: ExtensionApplicationID, Data: []byte{}}}
}

// ratchetTreeOf returns the tree carried by gi.
func ratchetTreeOf(t *testing.T, gi *GroupInfo) *treekem.Tree {
	t.Helper()
	data, ok := findExtension(gi.Extensions, ExtensionRatchetTree)
	require.True(t, ok)
	tree, err := treekem.ParseTree(gi.GroupContext.CipherSuite, data)
	require.NoError(t, err)
	return tree
}

// setRatchetTree replaces gi's tree by the encoding data and sets the
// tree hash to match it.
func setRatchetTree(t *testing.T, gi *GroupInfo, data []byte) {
	t.Helper()
	for i := range gi.Extensions {
		if gi.Extensions[i].Type == ExtensionRatchetTree {
			gi.Extensions[i].Data = data
		}
	}
	tree, err := treekem.ParseTree(gi.GroupContext.CipherSuite, data)
	require.NoError(t, err)
	gi.GroupContext.TreeHash = tree.TreeHash()
}

func TestRefuseWelcome(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	cases := []struct {
		name string
		edit func(t *testing.T, gi *GroupInfo, gs *GroupSecrets)
		want []any
	}{
		{"group-info-duplicate-extension", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			gi.Extensions = append(gi.Extensions, dupExtensions()...)
		}, []any{"13.4"}},
		{"group-context-duplicate-extension", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			gi.GroupContext.Extensions = dupExtensions()
		}, []any{"13.4"}},
		{"signer-blank", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) { gi.Signer = 3 }, []any{"12.4.3.1"}},
		{"tree-hash", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) { gi.GroupContext.TreeHash[0] ^= 1 }, []any{"12.4.3.1"}},
		{"tree-invalid", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			// bob's identity changed without his signature: the tree hash
			// matches, the leaf does not verify.
			data := ratchetTreeOf(t, gi).Bytes()
			i := bytes.Index(data, []byte("bob"))
			require.Positive(t, i)
			data = bytes.Clone(data)
			data[i+1] = 'x'
			setRatchetTree(t, gi, data)
		}, []any{"12.4.3.1", treekem.ErrInvalidTree}},
		{"version", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) { gi.GroupContext.Version = 2 }, []any{ErrUnsupported}},
		{"cipher-suite", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			gi.GroupContext.CipherSuite = MLS_128_DHKEMP256_AES128GCM_SHA256_P256
		}, []any{ErrUnsupported}},
		{"unsupported-group-extension", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			// No member supports it: the tree is refused (§13.4, as
			// checked on every leaf), before the joiner's own check.
			gi.GroupContext.Extensions = append(gi.GroupContext.Extensions, Extension{Type: testExtension, Data: []byte("x")})
		}, []any{anyOf{ErrUnsupported, treekem.ErrCapabilities}}},
		{"path-secret", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			// §12.4.3.1: the path secret must give the keys in the tree.
			require.NotNil(t, gs.PathSecret)
			gs.PathSecret = bytes.Repeat([]byte{7}, len(gs.PathSecret))
		}, []any{"12.4.3.1", treekem.ErrPublicKeyMismatch}},
		{"confirmation-tag", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) { gi.ConfirmationTag[0] ^= 1 }, []any{ErrDecryption}},
		{"psk-nonce-length", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			gs.PSKs = []PreSharedKeyID{{PSKType: keyschedule.PSKTypeExternal, PSKID: []byte("k"), PSKNonce: make([]byte, 5)}}
		}, []any{"8.4"}},
		{"psk-usage", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			gs.PSKs = []PreSharedKeyID{{PSKType: keyschedule.PSKTypeResumption, Usage: 7, PSKGroupID: []byte("g"), PSKNonce: make([]byte, cs.HashSize())}}
		}, []any{"8.4"}},
		{"psk-usage-zero", func(t *testing.T, gi *GroupInfo, gs *GroupSecrets) {
			gs.PSKs = []PreSharedKeyID{{PSKType: keyschedule.PSKTypeResumption, Usage: 0, PSKGroupID: []byte("g"), PSKNonce: make([]byte, cs.HashSize())}}
		}, []any{"8.4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			alice, w, kp := welcomeFixture(t, nil, nil)
			_, err := Join(w, kp, nil, nil) // the genuine Welcome joins
			require.NoError(t, err)
			bad := resealWelcome(t, w, kp, alice.sig, func(gi *GroupInfo, gs *GroupSecrets) { c.edit(t, gi, gs) })
			_, err = Join(transmit(t, bad), kp, nil, nil)
			require.Error(t, err)
			requireMatches(t, err, c.want...)
		})
	}
	t.Run("own-leaf-missing", func(t *testing.T) {
		// The tree of the previous epoch: valid, signed for, but without
		// dave.
		alice, w, kp := welcomeFixture(t, nil, nil)
		prev := alice.g.RatchetTree() // the commit is not merged
		bad := resealWelcome(t, w, kp, alice.sig, func(gi *GroupInfo, _ *GroupSecrets) { setRatchetTree(t, gi, prev) })
		_, err := Join(transmit(t, bad), kp, nil, nil)
		requireMatches(t, err, "12.4.3.1")
		require.NotErrorIs(t, err, treekem.ErrInvalidTree)
	})
	t.Run("own-key-with-other-signature-key", func(t *testing.T) {
		// eve's valid leaf carries dave's encryption key: the leaf holding
		// our key must also hold our signature key.
		alice, w, kp := welcomeFixture(t, nil, nil)
		tree, err := treekem.ParseTree(cs, alice.g.RatchetTree())
		require.NoError(t, err)
		eve := newMember(t, cs, "eve")
		leaf := kp.KeyPackage.LeafNode
		leaf.SignatureKey = eve.sig.PublicKey()
		leaf.Credential = eve.cred
		require.NoError(t, leaf.Sign(cs, eve.sig, nil, 0))
		_, err = tree.AddLeaf(&leaf)
		require.NoError(t, err)
		bad := resealWelcome(t, w, kp, alice.sig, func(gi *GroupInfo, _ *GroupSecrets) { setRatchetTree(t, gi, tree.Bytes()) })
		_, err = Join(transmit(t, bad), kp, nil, nil)
		// Refused at the leaf lookup, not later by the path secret.
		requireMatches(t, err, "12.4.3.1", notErr{treekem.ErrInvalidTree}, notErr{treekem.ErrPublicKeyMismatch}, notErr{ErrDecryption})
	})
	t.Run("signer-blank-inside", func(t *testing.T) {
		// A blank leaf inside the tree (not past its end): alice removes
		// bob and carol and adds dave, who takes leaf 1; leaf 2 stays
		// blank between dave and erin.
		ms := m6Group(t, cs, nil, nil, nil, "alice", "bob", "carol", "erin")
		dave := newMember(t, cs, "dave")
		kp := dave.keyPackage(t, cs)
		pc, err := ms[0].g.Commit(&CommitOptions{Remove: []LeafIndex{1, 2}, Add: []*KeyPackage{kp.KeyPackage}})
		require.NoError(t, err)
		bad := resealWelcome(t, pc.Welcome, kp, ms[0].sig, func(gi *GroupInfo, _ *GroupSecrets) {
			require.Nil(t, ratchetTreeOf(t, gi).Leaf(2))
			gi.Signer = 2
		})
		_, err = Join(transmit(t, bad), kp, nil, nil)
		requireMatches(t, err, "12.4.3.1")
		require.NotErrorIs(t, err, ErrLeafIndexRange)
	})
	t.Run("group-info-signature", func(t *testing.T) {
		// Signed by dave instead of alice, the signer.
		_, w, kp := welcomeFixture(t, nil, nil)
		bad := resealWelcome(t, w, kp, kp.SignatureKey, func(*GroupInfo, *GroupSecrets) {})
		_, err := Join(transmit(t, bad), kp, nil, nil)
		requireMatches(t, err, ErrInvalidSignature)
	})
}

func TestRefuseExternalJoin(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	joinWith := func(t *testing.T, ms []*member, edit func(gi *GroupInfo), want ...any) {
		t.Helper()
		gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
		require.NoError(t, err)
		eve := newMember(t, cs, "eve")
		_, _, err = JoinExternal(transmit(t, gi), eve.cred, eve.sig, nil, nil)
		require.NoError(t, err, "the genuine GroupInfo")
		bad := resignGroupInfo(t, gi, ms[0].sig, edit)
		_, _, err = JoinExternal(transmit(t, bad), eve.cred, eve.sig, nil, nil)
		require.Error(t, err)
		requireMatches(t, err, want...)
	}
	t.Run("duplicate-extension", func(t *testing.T) {
		joinWith(t, threeMembers(t, nil), func(gi *GroupInfo) { gi.Extensions = append(gi.Extensions, dupExtensions()...) }, "13.4")
	})
	t.Run("external-pub-malformed", func(t *testing.T) {
		joinWith(t, threeMembers(t, nil), func(gi *GroupInfo) {
			for i := range gi.Extensions {
				if gi.Extensions[i].Type == ExtensionExternalPub {
					// A valid key followed by a stray byte.
					gi.Extensions[i].Data = append(bytes.Clone(gi.Extensions[i].Data), 0)
				}
			}
		}, ErrMalformed)
	})
	t.Run("version", func(t *testing.T) {
		joinWith(t, threeMembers(t, nil), func(gi *GroupInfo) { gi.GroupContext.Version = 2 }, ErrUnsupported)
	})
	t.Run("unsupported-group-extension", func(t *testing.T) {
		// The members support testExtension, eve does not (§13.4).
		kpOpts := func(int) *KeyPackageOptions {
			return &KeyPackageOptions{ExtensionTypes: []ExtensionType{testExtension}}
		}
		ms := m6Group(t, cs, &GroupOptions{ExtensionTypes: []ExtensionType{testExtension}}, nil, kpOpts, "alice", "bob")
		joinWith(t, ms, func(gi *GroupInfo) {
			gi.GroupContext.Extensions = append(gi.GroupContext.Extensions, Extension{Type: testExtension, Data: []byte("x")})
		}, "13.4", ErrUnsupported)
	})
	t.Run("required-capabilities", func(t *testing.T) {
		// The members support testExtension, eve does not.
		kpOpts := func(int) *KeyPackageOptions {
			return &KeyPackageOptions{ExtensionTypes: []ExtensionType{testExtension}}
		}
		ms := m6Group(t, cs, &GroupOptions{ExtensionTypes: []ExtensionType{testExtension}}, nil, kpOpts, "alice", "bob")
		joinWith(t, ms, func(gi *GroupInfo) {
			gi.GroupContext.Extensions = append(gi.GroupContext.Extensions,
				requiredCapabilities(t, &RequiredCapabilities{Extensions: []ExtensionType{testExtension}}))
		}, "11.1", ErrUnsupported)
	})
}

// TestRefuseWrongMessage passes messages of the wrong kind or suite where
// a Welcome or GroupInfo is expected, as an application would if the
// delivery service sent it something else.
func TestRefuseWrongMessage(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice, w, kp := welcomeFixture(t, nil, nil)
	gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	eve := newMember(t, cs, "eve")

	_, err = Join(transmit(t, gi), kp, nil, nil)
	requireMatches(t, err, ErrUnsupported)
	_, _, err = JoinExternal(transmit(t, w), eve.cred, eve.sig, nil, nil)
	requireMatches(t, err, ErrUnsupported)

	unknown := transmit(t, w)
	unknown.Welcome.CipherSuite = 0x7777
	_, err = Join(unknown, kp, nil, nil)
	requireMatches(t, err, ErrUnsupported)

	other := transmit(t, w)
	other.Welcome.CipherSuite = MLS_128_DHKEMP256_AES128GCM_SHA256_P256
	_, err = Join(other, kp, nil, nil)
	requireMatches(t, err, ErrUnsupported)

	badSuite := resignGroupInfo(t, gi, alice.sig, func(gi *GroupInfo) { gi.GroupContext.CipherSuite = 0x7777 })
	_, _, err = JoinExternal(badSuite, eve.cred, eve.sig, nil, nil)
	requireMatches(t, err, ErrUnsupported)

	// The genuine messages still work.
	_, err = Join(transmit(t, w), kp, nil, nil)
	require.NoError(t, err)
}
