package mls

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/treekem"
)

// Refusals of Add proposals whose KeyPackage breaks RFC 9420, §10.1,
// §12.1.1 or §13.4. The KeyPackage (and, where the test is not about it,
// its leaf node) is signed again by its owner after the change, and the
// proposal is signed and MACed by a member, so the check under test fires.

// tamperedKeyPackage returns dave's KeyPackage after edit, with the leaf
// node and then the KeyPackage signed again by dave (the leaf node only if
// resignLeaf).
func tamperedKeyPackage(t *testing.T, cs CipherSuite, edit func(kp *KeyPackage), resignLeaf bool) *KeyPackage {
	t.Helper()
	dave := newMember(t, cs, "dave")
	kp := *dave.keyPackage(t, cs).KeyPackage
	kp.LeafNode.Signature = bytes.Clone(kp.LeafNode.Signature)
	edit(&kp)
	if resignLeaf {
		require.NoError(t, kp.LeafNode.Sign(cs, dave.sig, nil, 0))
	}
	require.NoError(t, kp.sign(dave.sig))
	return &kp
}

func TestRefuseKeyPackage(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	cases := []struct {
		name       string
		edit       func(kp *KeyPackage)
		resignLeaf bool
		want       []any
	}{
		{"version", func(kp *KeyPackage) { kp.Version = 2 }, true, []any{"12.1.1"}},
		{"leaf-source", func(kp *KeyPackage) { kp.LeafNode.Source = treekem.SourceCommit }, true, []any{"10.1"}},
		{"init-key-invalid", func(kp *KeyPackage) { kp.InitKey = []byte{1, 2, 3} }, true, []any{"10.1"}},
		{"init-key-equals-encryption-key", func(kp *KeyPackage) { kp.InitKey = bytes.Clone(kp.LeafNode.EncryptionKey) }, true, []any{"10.1"}},
		{"duplicate-extension", func(kp *KeyPackage) {
			kp.Extensions = []Extension{{Type: ExtensionApplicationID, Data: []byte{}}, {Type: ExtensionApplicationID, Data: []byte{}}}
		}, true, []any{"13.4"}},
		{"leaf-signature", func(kp *KeyPackage) { kp.LeafNode.Signature[0] ^= 1 }, false, []any{ErrInvalidSignature}},
	}
	for _, c := range cases {
		t.Run(c.name+"/proposal", func(t *testing.T) {
			ms := threeMembers(t, nil)
			kp := tamperedKeyPackage(t, cs, c.edit, c.resignLeaf)
			refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), c.want...)
		})
		t.Run(c.name+"/commit", func(t *testing.T) {
			ms := threeMembers(t, nil)
			kp := tamperedKeyPackage(t, cs, c.edit, c.resignLeaf)
			refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(addOf(kp))), c.want...)
		})
	}
}

// TestRefuseCommitAdd refuses Adds that are valid KeyPackages but do not
// fit the group.
func TestRefuseCommitAdd(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("unsupported-group-extension", func(t *testing.T) {
		// §13.4: the group uses testExtension; dave does not support it.
		kpOpts := func(int) *KeyPackageOptions {
			return &KeyPackageOptions{ExtensionTypes: []ExtensionType{testExtension}}
		}
		gopts := &GroupOptions{ExtensionTypes: []ExtensionType{testExtension}, Extensions: []Extension{{Type: testExtension, Data: []byte("p")}}}
		ms := m6Group(t, cs, gopts, nil, kpOpts, "alice", "bob")
		kp := newMember(t, cs, "dave").keyPackage(t, cs).KeyPackage
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(addOf(kp))), anyOf{ErrUnsupported, treekem.ErrCapabilities})
	})
	t.Run("member-already-in-group", func(t *testing.T) {
		// The KeyPackage of a current member: its keys are in the tree.
		ms := threeMembers(t, nil)
		leaf := *ms[2].g.state.tree.Leaf(ms[2].g.OwnLeafIndex())
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			kp.LeafNode.SignatureKey = leaf.SignatureKey
		}, false)
		// Signed by carol's key, as the real owner of the key would.
		kp.LeafNode.Source = treekem.SourceKeyPackage
		require.NoError(t, kp.LeafNode.Sign(cs, ms[2].sig, nil, 0))
		require.NoError(t, kp.sign(ms[2].sig))
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(addOf(kp))), "12.1.1", treekem.ErrDuplicateKey)
	})
}
