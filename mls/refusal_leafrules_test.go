package mls

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/treekem"
)

// Refusals of leaves that break the leaf rules of RFC 9420, §5.3.1, §7.2
// and §7.3 as the group applies them (Config.MaxLeafLifetime,
// Config.ValidateCredentialSuccessor, the group's version, suite and
// extensions). Every leaf is signed again by its owner after the change.

// forgedUpdate is an Update proposal of m's leaf after edit, signed by m.
func forgedUpdate(t *testing.T, m *member, edit func(l *LeafNode)) *MLSMessage {
	t.Helper()
	upd, _ := cachedUpdate(t, m)
	leaf := upd.Update.LeafNode
	edit(&leaf)
	require.NoError(t, leaf.Sign(m.g.cs, m.sig, m.g.GroupID(), m.g.OwnLeafIndex()))
	return forgeProposal(t, m.g, WireFormatPublicMessage, &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}})
}

func TestRefuseLeafRules(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("add/lifetime-too-long", func(t *testing.T) {
		// §7.2: longer than DefaultMaxLeafLifetime.
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			kp.LeafNode.Lifetime.NotAfter = kp.LeafNode.Lifetime.NotBefore + uint64(2*DefaultMaxLeafLifetime.Seconds())
		}, true)
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), treekem.ErrLifetime)
	})
	t.Run("add/expired", func(t *testing.T) {
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			kp.LeafNode.Lifetime.NotBefore = 1000
			kp.LeafNode.Lifetime.NotAfter = 2000
		}, true)
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(addOf(kp))), treekem.ErrLifetime)
	})
	t.Run("add/version-not-listed", func(t *testing.T) {
		// §7.3: the leaf must list the group's protocol version.
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) { kp.LeafNode.Capabilities.Versions = nil }, true)
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), treekem.ErrCapabilities)
	})
	t.Run("add/suite-not-listed", func(t *testing.T) {
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			kp.LeafNode.Capabilities.CipherSuites = []CipherSuite{MLS_128_DHKEMP256_AES128GCM_SHA256_P256}
		}, true)
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), treekem.ErrCapabilities)
	})
	t.Run("add/key-package-extension-not-listed", func(t *testing.T) {
		// §10: KeyPackage extensions must be listed in the leaf's
		// capabilities.
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			kp.Extensions = append(kp.Extensions, Extension{Type: 0xff05, Data: []byte{}})
		}, true)
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), "10", treekem.ErrCapabilities)
	})
	t.Run("add/lifetime-inverted", func(t *testing.T) {
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			lt := &kp.LeafNode.Lifetime
			lt.NotBefore, lt.NotAfter = lt.NotAfter, lt.NotBefore
		}, true)
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), "7.3", treekem.ErrLifetime)
	})
	t.Run("add/leaf-extension-not-listed", func(t *testing.T) {
		// §10: refused as a KeyPackage (section 10) before the leaf
		// checks (section 12.1.1) run.
		ms := threeMembers(t, nil)
		kp := tamperedKeyPackage(t, cs, func(kp *KeyPackage) {
			kp.LeafNode.Extensions = append(slices.Clone(kp.LeafNode.Extensions), Extension{Type: 0xff06, Data: []byte{}})
		}, true)
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, addOf(kp)), "10", treekem.ErrCapabilities)
	})
	t.Run("update/identity-changed", func(t *testing.T) {
		// §5.3.1: by default a basic credential's identity may not change.
		ms := threeMembers(t, nil)
		msg := forgedUpdate(t, ms[2], func(l *LeafNode) { l.Credential.Identity = []byte("mallory") })
		refused(t, ms[1].g, msg, treekem.ErrCredential)
	})
	t.Run("update/successor-hook", func(t *testing.T) {
		// bob's application refuses every successor.
		ms := threeMembers(t, nil)
		ms[1].g.cfg.ValidateCredentialSuccessor = func(old, new *Credential) error { return ErrIdentityChanged }
		msg := forgedUpdate(t, ms[2], func(*LeafNode) {})
		refused(t, ms[1].g, msg, treekem.ErrCredential, ErrIdentityChanged)
	})
	t.Run("update/suite-not-listed", func(t *testing.T) {
		ms := threeMembers(t, nil)
		msg := forgedUpdate(t, ms[2], func(l *LeafNode) {
			l.Capabilities.CipherSuites = []CipherSuite{MLS_128_DHKEMP256_AES128GCM_SHA256_P256}
		})
		refused(t, ms[1].g, msg, treekem.ErrCapabilities)
	})
	t.Run("path/identity-changed", func(t *testing.T) {
		// The commit path's leaf replaces the committer's: same rule.
		ms := threeMembers(t, nil)
		g := ms[0].g
		pc, err := g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		bad := retagCommit(t, g, pc, func(c *FramedContent) {
			l := &c.Commit.Path.LeafNode
			l.Credential.Identity = []byte("mallory")
			require.NoError(t, l.Sign(cs, g.sigPriv, g.GroupID(), g.OwnLeafIndex()))
		})
		refused(t, ms[1].g, bad, treekem.ErrCredential)
	})
}

// TestOwnCapabilities checks what we send (§7.2, §13.5): our KeyPackages
// list no default proposal or extension type, and every extension they
// carry, in the KeyPackage or its leaf, is listed in the leaf's
// capabilities.
func TestOwnCapabilities(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	for range 20 { // GREASE values are drawn at random
		kp := newMember(t, cs, "dave").keyPackage(t, cs).KeyPackage
		caps := &kp.LeafNode.Capabilities
		for _, e := range caps.Extensions {
			require.False(t, e.IsDefault(), "default extension type %d listed", e)
		}
		for _, p := range caps.Proposals {
			require.False(t, p.IsDefault(), "default proposal type %d listed", p)
		}
		for _, e := range append(slices.Clone(kp.Extensions), kp.LeafNode.Extensions...) {
			require.True(t, caps.SupportsExtension(e.Type), "extension %d not listed", e.Type)
		}
		require.NoError(t, kp.verifyBasic())
	}
}

func TestRefuseGroupExtensionSupport(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("update-drops-group-extension", func(t *testing.T) {
		// §13.4: a member's Update may not drop support for an extension
		// the group uses.
		kpOpts := func(int) *KeyPackageOptions {
			return &KeyPackageOptions{ExtensionTypes: []ExtensionType{testExtension}}
		}
		gopts := &GroupOptions{ExtensionTypes: []ExtensionType{testExtension}, Extensions: []Extension{{Type: testExtension, Data: []byte("p")}}}
		ms := m6Group(t, cs, gopts, nil, kpOpts, "alice", "bob", "carol")
		msg := forgedUpdate(t, ms[2], func(l *LeafNode) {
			l.Capabilities.Extensions = slices.DeleteFunc(slices.Clone(l.Capabilities.Extensions), func(e ExtensionType) bool { return e == testExtension })
		})
		refused(t, ms[1].g, msg, treekem.ErrCapabilities)
	})
	t.Run("own-grease-is-not-support", func(t *testing.T) {
		// §13.5: every member lists the GREASE value 0x3a3a, but a
		// member's own GREASE values never count as support, so bob
		// refuses a group extension of that type.
		const grease ExtensionType = 0x3a3a
		kpOpts := func(int) *KeyPackageOptions {
			return &KeyPackageOptions{ExtensionTypes: []ExtensionType{grease}}
		}
		ms := m6Group(t, cs, &GroupOptions{ExtensionTypes: []ExtensionType{grease}}, nil, kpOpts, "alice", "bob")
		for _, m := range ms {
			require.True(t, m.g.state.tree.Leaf(m.g.OwnLeafIndex()).Capabilities.SupportsExtension(grease))
		}
		gce := &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{
			Extensions: []Extension{{Type: grease, Data: []byte{}}},
		}}
		refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, gce), "12.1.7")
	})
}

// TestRefuseKeyPackageValidate feeds KeyPackage.Validate, which an
// application runs on KeyPackages from the delivery service, KeyPackages
// that break §10.1 and are signed again by their owner.
func TestRefuseKeyPackageValidate(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	require.NoError(t, newMember(t, cs, "dave").keyPackage(t, cs).KeyPackage.Validate(nil), "a genuine KeyPackage")
	cases := []struct {
		name string
		edit func(kp *KeyPackage)
		want []any
	}{
		{"version", func(kp *KeyPackage) { kp.Version = 2 }, []any{ErrUnsupported}},
		{"unknown-suite", func(kp *KeyPackage) { kp.CipherSuite = 0x7777 }, []any{ErrUnsupported}},
		{"leaf-source", func(kp *KeyPackage) { kp.LeafNode.Source = treekem.SourceCommit }, []any{"10.1"}},
		{"init-key-equals-encryption-key", func(kp *KeyPackage) { kp.InitKey = slices.Clone(kp.LeafNode.EncryptionKey) }, []any{"10.1"}},
		{"lifetime-too-long", func(kp *KeyPackage) {
			kp.LeafNode.Lifetime.NotAfter = kp.LeafNode.Lifetime.NotBefore + uint64(2*DefaultMaxLeafLifetime.Seconds())
		}, []any{treekem.ErrLifetime}},
		{"expired", func(kp *KeyPackage) { kp.LeafNode.Lifetime = treekem.Lifetime{NotBefore: 1000, NotAfter: 2000} }, []any{treekem.ErrLifetime}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dave := newMember(t, cs, "dave")
			kp := *dave.keyPackage(t, cs).KeyPackage
			c.edit(&kp)
			if kp.CipherSuite.Supported() {
				require.NoError(t, kp.LeafNode.Sign(cs, dave.sig, nil, 0))
				require.NoError(t, kp.sign(dave.sig))
			}
			requireMatches(t, kp.Validate(nil), c.want...)
		})
	}
}
