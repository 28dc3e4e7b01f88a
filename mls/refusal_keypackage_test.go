package mls

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// This file holds the negative tests of the KeyPackage and leaf node rules
// of RFC 9420, §5.3.1, §7.2, §7.3, §10, §12.4.3.2, §12.4.3.3, §13.4 and
// §13.5. Every refused message is correctly signed (and MACed where the
// check comes before the MACs that the tampering invalidates), so the
// rule under test is the one that fires; each test asserts the specific
// error and that the group's encoded state did not change. Helpers are
// prefixed rfb.

const rfbSuite = MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

// rfbRefused processes msg at g after a wire round trip and requires an
// error matching want, a ValidationError of section somewhere in its
// chain (if section is not empty), and an unchanged encoded state.
func rfbRefused(t *testing.T, g *Group, msg *MLSMessage, want error, section string) error {
	t.Helper()
	before, err := g.MarshalState()
	require.NoError(t, err)
	_, err = g.Process(transmit(t, msg))
	require.ErrorIs(t, err, want)
	if section != "" {
		require.True(t, rfbHasSection(err, section), "error %v has no ValidationError of §%s", err, section)
	}
	after, err2 := g.MarshalState()
	require.NoError(t, err2)
	require.Equal(t, before, after, "a refused message changed the group's state")
	return err
}

// rfbHasSection reports whether a ValidationError of section is anywhere in
// err's chain.
func rfbHasSection(err error, section string) bool {
	for err != nil {
		if ve, ok := err.(*ValidationError); ok && ve.Section == section {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if rfbHasSection(e, section) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// rfbResignKeyPackage returns a copy of kp changed by f, with its leaf node
// and the KeyPackage signed again by sig.
func rfbResignKeyPackage(t *testing.T, kp *KeyPackage, sig *hpke.SignaturePrivateKey, f func(*KeyPackage)) *KeyPackage {
	t.Helper()
	c := *kp
	c.Extensions = slices.Clone(c.Extensions)
	c.LeafNode.Extensions = slices.Clone(c.LeafNode.Extensions)
	caps := &c.LeafNode.Capabilities
	caps.Versions = slices.Clone(caps.Versions)
	caps.CipherSuites = slices.Clone(caps.CipherSuites)
	caps.Extensions = slices.Clone(caps.Extensions)
	caps.Proposals = slices.Clone(caps.Proposals)
	caps.Credentials = slices.Clone(caps.Credentials)
	f(&c)
	require.NoError(t, c.LeafNode.Sign(c.CipherSuite, sig, nil, 0))
	require.NoError(t, c.sign(sig))
	return &c
}

// rfbUpdate returns an Update proposal of m: its current leaf with a fresh
// encryption key, changed by f, correctly signed.
func rfbUpdate(t *testing.T, m *member, f func(*LeafNode)) *Proposal {
	t.Helper()
	g := m.g
	me := g.OwnLeafIndex()
	enc, err := g.cs.GenerateKeyPair()
	require.NoError(t, err)
	leaf := *g.state.tree.Leaf(me)
	leaf.EncryptionKey = enc.PublicKey()
	leaf.Source = treekem.SourceUpdate
	leaf.Lifetime = Lifetime{}
	leaf.ParentHash = nil
	leaf.Capabilities.Extensions = slices.Clone(leaf.Capabilities.Extensions)
	leaf.Capabilities.CipherSuites = slices.Clone(leaf.Capabilities.CipherSuites)
	if f != nil {
		f(&leaf)
	}
	require.NoError(t, leaf.Sign(g.cs, m.sig, g.GroupID(), me))
	return &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}}
}

// rfbTamperPath changes the path leaf of a member's PublicMessage commit
// with f, then signs the leaf, the content and the membership tag again
// with the committer's keys (the committer has not merged it). The
// confirmation tag is left as it was: the leaf rules are checked before it.
func rfbTamperPath(t *testing.T, committer *member, commit *MLSMessage, f func(*LeafNode)) *MLSMessage {
	t.Helper()
	g := committer.g
	m := transmit(t, commit)
	require.NotNil(t, m.PublicMessage)
	c := m.PublicMessage.Content
	require.NotNil(t, c.Commit.Path)
	leaf := &c.Commit.Path.LeafNode
	f(leaf)
	require.NoError(t, leaf.Sign(g.cs, committer.sig, g.GroupID(), g.OwnLeafIndex()))
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: c, Auth: m.PublicMessage.Auth}
	require.NoError(t, signContent(g.cs, committer.sig, ac, g.state.ctxBytes))
	pm, err := g.state.framer.protectPublic(ac)
	require.NoError(t, err)
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatPublicMessage, PublicMessage: pm}
}

// rfbTamperExternal is rfbTamperPath for an external commit from joiner,
// whose leaf lands at leaf at, for a group whose current context is ctx.
func rfbTamperExternal(t *testing.T, joiner *member, at LeafIndex, ctx []byte, groupID []byte, commit *MLSMessage, f func(*LeafNode)) *MLSMessage {
	t.Helper()
	m := transmit(t, commit)
	c := m.PublicMessage.Content
	leaf := &c.Commit.Path.LeafNode
	f(leaf)
	require.NoError(t, leaf.Sign(rfbSuite, joiner.sig, groupID, at))
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: c, Auth: m.PublicMessage.Auth}
	require.NoError(t, signContent(rfbSuite, joiner.sig, ac, ctx))
	m.PublicMessage.Content = c
	m.PublicMessage.Auth = ac.Auth
	return m
}

// rfbCheckListing applies, independently of the package's own checks,
// every rule a strict implementation applies to the capabilities of a
// leaf node (and KeyPackage extensions kpExts) created for suite cs.
func rfbCheckListing(t *testing.T, cs CipherSuite, leaf *LeafNode, kpExts []Extension) {
	t.Helper()
	caps := &leaf.Capabilities
	assert.Contains(t, caps.Versions, MLS10, "version listed (§7.2)")
	assert.Contains(t, caps.CipherSuites, cs, "cipher suite listed (§7.2, §10)")
	assert.Contains(t, caps.Credentials, leaf.Credential.Type, "credential type listed (§7.2)")
	for _, e := range caps.Extensions {
		assert.False(t, e >= 1 && e <= 5, "default extension type %d listed (§7.2)", e)
	}
	for _, p := range caps.Proposals {
		assert.False(t, p >= 1 && p <= 7, "default proposal type %d listed (§7.2)", p)
	}
	for _, list := range [][]Extension{leaf.Extensions, kpExts} {
		seen := map[ExtensionType]bool{}
		for _, e := range list {
			assert.False(t, seen[e.Type], "extension %d twice (§13.4)", e.Type)
			seen[e.Type] = true
			if e.Type < 1 || e.Type > 5 {
				assert.Contains(t, caps.Extensions, e.Type, "extension %d not listed in the capabilities (§7.2, §10)", e.Type)
			}
		}
	}
}

// TestGeneratedKeyPackagesStrict checks that our KeyPackages satisfy every
// rule a strict implementation applies, whatever GREASE values are drawn,
// and that the group's own leaves (creator, Update, commit path) do too.
func TestGeneratedKeyPackagesStrict(t *testing.T) {
	now := time.Now()
	options := []*KeyPackageOptions{
		nil,
		{LastResort: true},
		{Extensions: []Extension{{Type: 0xff20, Data: []byte("kp")}}, LeafExtensions: []Extension{{Type: 0xff21}, {Type: ExtensionApplicationID, Data: []byte("app")}}},
		{ExtensionTypes: []ExtensionType{ExtensionExternalSenders, 0xff22}, ProposalTypes: []ProposalType{ProposalTypeAdd, 0xff23}},
		{NoGREASE: true, LastResort: true},
	}
	for _, cs := range hpke.CipherSuites() {
		m := newMember(t, cs, "kp")
		for i, o := range options {
			for range 8 {
				kp, err := GenerateKeyPackage(cs, m.cred, m.sig, o)
				require.NoError(t, err, "options %d", i)
				k := kp.KeyPackage
				rfbCheckListing(t, cs, &k.LeafNode, k.Extensions)
				if o == nil || !o.NoGREASE {
					caps := &k.LeafNode.Capabilities
					assert.True(t, slices.ContainsFunc(caps.CipherSuites, func(v CipherSuite) bool { return IsGREASE(uint16(v)) }))
					assert.True(t, slices.ContainsFunc(caps.Extensions, func(v ExtensionType) bool { return IsGREASE(uint16(v)) }))
					assert.True(t, slices.ContainsFunc(caps.Proposals, func(v ProposalType) bool { return IsGREASE(uint16(v)) }))
					assert.True(t, slices.ContainsFunc(caps.Credentials, func(v CredentialType) bool { return IsGREASE(uint16(v)) }))
					assert.True(t, slices.ContainsFunc(k.Extensions, func(e Extension) bool { return IsGREASE(uint16(e.Type)) }), "GREASE KeyPackage extension (§13.5)")
					assert.True(t, slices.ContainsFunc(k.LeafNode.Extensions, func(e Extension) bool { return IsGREASE(uint16(e.Type)) }), "GREASE leaf extension (§13.5)")
				}
				lt := k.LeafNode.Lifetime
				assert.True(t, lt.Contains(now), "lifetime holds the current time (§7.3)")
				assert.LessOrEqual(t, lt.NotAfter-lt.NotBefore, uint64(DefaultMaxLeafLifetime/time.Second), "lifetime within the default maximum (§7.2)")
				g := &Group{cs: cs}
				require.NoError(t, g.verifyKeyPackage(k))
			}
		}
	}

	// The leaves of a live group: creator, joiners, Update and commit.
	ms := m6Group(t, rfbSuite, &GroupOptions{ExtensionTypes: []ExtensionType{0xff24}}, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	upd, err := bob.g.ProposeUpdate()
	require.NoError(t, err)
	deliver(t, upd, alice)
	pc, err := alice.g.Commit(nil)
	require.NoError(t, err)
	deliver(t, pc.Commit, bob)
	require.NoError(t, alice.g.MergePendingCommit(pc))
	for _, m := range ms {
		for _, l := range m.g.state.tree.Leaves() {
			rfbCheckListing(t, rfbSuite, l, nil)
		}
	}
}

// TestRefuseGenerateKeyPackageListing: the sender's own checks (§7.2, §10)
// refuse options that would make a KeyPackage strict receivers reject.
func TestRefuseGenerateKeyPackageListing(t *testing.T) {
	m := newMember(t, rfbSuite, "kp")
	good := Capabilities{
		Versions:     []ProtocolVersion{MLS10},
		CipherSuites: []CipherSuite{rfbSuite},
		Extensions:   []ExtensionType{0xff30},
		Credentials:  []CredentialType{CredentialBasic},
	}
	_, err := GenerateKeyPackage(rfbSuite, m.cred, m.sig, &KeyPackageOptions{Capabilities: &good, NoGREASE: true, Extensions: []Extension{{Type: 0xff30}}})
	require.NoError(t, err)
	for name, c := range map[string]struct {
		caps    func(*Capabilities)
		opts    KeyPackageOptions
		section string
	}{
		"default extension listed":      {func(c *Capabilities) { c.Extensions = append(c.Extensions, ExtensionRequiredCapabilities) }, KeyPackageOptions{}, "7.2"},
		"default proposal listed":       {func(c *Capabilities) { c.Proposals = []ProposalType{ProposalTypeRemove} }, KeyPackageOptions{}, "7.2"},
		"suite not listed":              {func(c *Capabilities) { c.CipherSuites = []CipherSuite{MLS_128_DHKEMP256_AES128GCM_SHA256_P256} }, KeyPackageOptions{}, "10"},
		"version not listed":            {func(c *Capabilities) { c.Versions = nil }, KeyPackageOptions{}, "10"},
		"KeyPackage extension unlisted": {func(*Capabilities) {}, KeyPackageOptions{Extensions: []Extension{{Type: 0xff31}}}, "10"},
		"leaf extension unlisted":       {func(*Capabilities) {}, KeyPackageOptions{LeafExtensions: []Extension{{Type: 0xff31}}}, "7.2"},
		"last_resort unlisted":          {func(*Capabilities) {}, KeyPackageOptions{LastResort: true}, "10"},
	} {
		t.Run(name, func(t *testing.T) {
			caps := good
			caps.Extensions = slices.Clone(good.Extensions)
			c.caps(&caps)
			o := c.opts
			o.Capabilities = &caps
			kp, err := GenerateKeyPackage(rfbSuite, m.cred, m.sig, &o)
			require.Nil(t, kp)
			require.ErrorIs(t, err, treekem.ErrCapabilities)
			require.True(t, rfbHasSection(err, c.section), "%v", err)
		})
	}
	_, err = GenerateKeyPackage(rfbSuite, m.cred, m.sig, &KeyPackageOptions{Lifetime: -time.Hour})
	require.Error(t, err)

	// The same rules for a group's creator and an external joiner.
	bad := good
	bad.Proposals = []ProposalType{ProposalTypeAdd}
	g, err := NewGroup(rfbSuite, m.cred, m.sig, &GroupOptions{Capabilities: &bad}, nil)
	require.Nil(t, g)
	require.ErrorIs(t, err, treekem.ErrCapabilities)
}

// TestRefuseKeyPackageUnlistedExtension: a received KeyPackage whose
// extensions, or whose leaf's extensions, are not listed in the leaf's
// capabilities is refused (§10, §7.3), also a GREASE type (§13.5: no
// special processing).
func TestRefuseKeyPackageUnlistedExtension(t *testing.T) {
	ms := m6Group(t, rfbSuite, nil, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	carol := newMember(t, rfbSuite, "carol")
	kp := carol.keyPackage(t, rfbSuite).KeyPackage

	for name, f := range map[string]func(*KeyPackage){
		"KeyPackage extension": func(k *KeyPackage) { k.Extensions = append(k.Extensions, Extension{Type: 0xff40}) },
		"leaf extension":       func(k *KeyPackage) { k.LeafNode.Extensions = append(k.LeafNode.Extensions, Extension{Type: 0xff41}) },
		"GREASE KeyPackage extension": func(k *KeyPackage) {
			k.LeafNode.Capabilities.Extensions = slices.DeleteFunc(k.LeafNode.Capabilities.Extensions, func(e ExtensionType) bool { return IsGREASE(uint16(e)) })
			k.LeafNode.Extensions = slices.DeleteFunc(k.LeafNode.Extensions, func(e Extension) bool { return IsGREASE(uint16(e.Type)) })
		},
	} {
		t.Run(name, func(t *testing.T) {
			bad := rfbResignKeyPackage(t, kp, carol.sig, f)
			msg := rawProposal(t, alice.g, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *bad}})
			rfbRefused(t, bob.g, msg, treekem.ErrCapabilities, "10")
			// The committer refuses it too.
			_, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{bad}})
			require.ErrorIs(t, err, treekem.ErrCapabilities)
		})
	}
	// The untouched KeyPackage is accepted.
	deliver(t, rawProposal(t, alice.g, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp}}), bob)
}

// TestRefuseKeyPackageSuiteUnlisted: the leaf of a KeyPackage must list
// the KeyPackage's (the group's) version and cipher suite (§10, §11.1).
func TestRefuseKeyPackageSuiteUnlisted(t *testing.T) {
	ms := m6Group(t, rfbSuite, nil, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	carol := newMember(t, rfbSuite, "carol")
	kp := carol.keyPackage(t, rfbSuite).KeyPackage
	for name, f := range map[string]func(*KeyPackage){
		"suite": func(k *KeyPackage) {
			k.LeafNode.Capabilities.CipherSuites = []CipherSuite{MLS_128_DHKEMP256_AES128GCM_SHA256_P256}
		},
		"version": func(k *KeyPackage) { k.LeafNode.Capabilities.Versions = []ProtocolVersion{2} },
	} {
		t.Run(name, func(t *testing.T) {
			bad := rfbResignKeyPackage(t, kp, carol.sig, f)
			msg := rawProposal(t, alice.g, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *bad}})
			rfbRefused(t, bob.g, msg, treekem.ErrCapabilities, "10")
		})
	}
}

// TestRefuseKeyPackageLifetime: the application's maximum total lifetime
// (§7.2, Config.MaxLeafLifetime) is enforced on received KeyPackages and
// on trees received when joining; a sender checks that the current time
// is within the lifetime (§7.3).
func TestRefuseKeyPackageLifetime(t *testing.T) {
	ms := m6Group(t, rfbSuite, nil, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	carol := newMember(t, rfbSuite, "carol")
	kp := carol.keyPackage(t, rfbSuite).KeyPackage

	long := rfbResignKeyPackage(t, kp, carol.sig, func(k *KeyPackage) {
		k.LeafNode.Lifetime.NotAfter = k.LeafNode.Lifetime.NotBefore + uint64((DefaultMaxLeafLifetime+time.Hour)/time.Second)
	})
	err := rfbRefused(t, bob.g, rawProposal(t, alice.g, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *long}}), treekem.ErrLifetime, "7.2")
	require.NotErrorIs(t, err, treekem.ErrCapabilities)
	_, err = alice.g.ProposeAdd(long)
	require.ErrorIs(t, err, treekem.ErrLifetime)

	expired := rfbResignKeyPackage(t, kp, carol.sig, func(k *KeyPackage) {
		k.LeafNode.Lifetime = Lifetime{NotBefore: uint64(time.Now().Add(-48 * time.Hour).Unix()), NotAfter: uint64(time.Now().Add(-24 * time.Hour).Unix())}
	})
	_, err = alice.g.ProposeAdd(expired)
	require.ErrorIs(t, err, treekem.ErrLifetime, "a sender checks the lifetime (§7.3)")
	rfbRefused(t, bob.g, rawProposal(t, alice.g, &Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *expired}}), treekem.ErrLifetime, "7.3")

	// A group that accepts long lifetimes adds the long KeyPackage; a
	// joiner with the default maximum then refuses the tree.
	lax := &Config{MaxLeafLifetime: 365 * 24 * time.Hour}
	ms = m6Group(t, rfbSuite, nil, lax, nil, "dave", "erin")
	dave := ms[0]
	frank := newMember(t, rfbSuite, "frank")
	frankKP := frank.keyPackage(t, rfbSuite)
	longDave := rfbResignKeyPackage(t, kp, carol.sig, func(k *KeyPackage) {
		k.LeafNode.Lifetime.NotAfter = k.LeafNode.Lifetime.NotBefore + 200*24*3600
	})
	pc, err := dave.g.Commit(&CommitOptions{Add: []*KeyPackage{longDave, frankKP.KeyPackage}})
	require.NoError(t, err)
	joined, err := Join(transmit(t, pc.Welcome), frankKP, nil, nil)
	require.Nil(t, joined)
	require.ErrorIs(t, err, treekem.ErrLifetime)
	require.True(t, rfbHasSection(err, "12.4.3.1"), "%v", err)
	joined, err = Join(transmit(t, pc.Welcome), frankKP, nil, lax)
	require.NoError(t, err)
	require.NotNil(t, joined)

	// A smaller maximum refuses the default KeyPackages, and the creator's
	// own leaf keeps within it.
	strict := &Config{MaxLeafLifetime: 30 * 24 * time.Hour}
	g, err := NewGroup(rfbSuite, dave.cred, dave.sig, nil, strict)
	require.NoError(t, err)
	lt := g.state.tree.Leaf(0).Lifetime
	require.LessOrEqual(t, lt.NotAfter-lt.NotBefore, uint64(30*24*3600))
	_, err = g.Commit(&CommitOptions{Add: []*KeyPackage{kp}})
	require.ErrorIs(t, err, treekem.ErrLifetime)
}

// TestRefuseUpdateDroppingGroupExtension: a member's Update leaf may not
// drop support for a GroupContext extension in use or for the group's
// required capabilities (§7.3, §11.1, §13.4), nor omit the group's cipher
// suite.
func TestRefuseUpdateDroppingGroupExtension(t *testing.T) {
	rc, err := marshalRequiredCapabilitiesForTest(&RequiredCapabilities{Extensions: []ExtensionType{0xff51}})
	require.NoError(t, err)
	types := []ExtensionType{0xff50, 0xff51}
	gopts := &GroupOptions{
		ExtensionTypes: types,
		Extensions:     []Extension{{Type: 0xff50, Data: []byte("in use")}, {Type: ExtensionRequiredCapabilities, Data: rc}},
	}
	kpOpts := func(int) *KeyPackageOptions { return &KeyPackageOptions{ExtensionTypes: types} }
	ms := m6Group(t, rfbSuite, gopts, nil, kpOpts, "alice", "bob")
	alice, bob := ms[0], ms[1]

	drop := func(typ ExtensionType) func(*LeafNode) {
		return func(l *LeafNode) {
			l.Capabilities.Extensions = slices.DeleteFunc(l.Capabilities.Extensions, func(e ExtensionType) bool { return e == typ })
		}
	}
	for name, f := range map[string]func(*LeafNode){
		"extension in use":    drop(0xff50),
		"required capability": drop(0xff51),
		"cipher suite dropped": func(l *LeafNode) {
			l.Capabilities.CipherSuites = []CipherSuite{MLS_128_DHKEMP256_AES128GCM_SHA256_P256}
		},
	} {
		t.Run(name, func(t *testing.T) {
			rfbRefused(t, alice.g, rawProposal(t, bob.g, rfbUpdate(t, bob, f)), treekem.ErrCapabilities, "12.1.2")
		})
	}
	// An Update keeping them is accepted.
	deliver(t, rawProposal(t, bob.g, rfbUpdate(t, bob, nil)), alice)
}

// marshalRequiredCapabilitiesForTest encodes a required_capabilities body.
func marshalRequiredCapabilitiesForTest(rc *RequiredCapabilities) ([]byte, error) {
	return wire.Marshal(rc.Marshal)
}

// rfbAddNode adds node n of tree as an optional<Node> (§12.4.3.3).
func rfbAddNode(b *cryptobyte.Builder, tree *treekem.Tree, n int) {
	if n%2 == 0 {
		if l := tree.Leaf(LeafIndex(n / 2)); l != nil {
			b.AddUint8(1)
			b.AddUint8(uint8(treekem.NodeTypeLeaf))
			l.Marshal(b)
			return
		}
	} else if p := tree.ParentNode(treekem.NodeIndex(n)); p != nil {
		b.AddUint8(1)
		b.AddUint8(uint8(treekem.NodeTypeParent))
		p.Marshal(b)
		return
	}
	b.AddUint8(0)
}

// TestRefuseCommitPathDroppingGroupExtension: the same rule for the leaf of
// a commit's UpdatePath.
func TestRefuseCommitPathDroppingGroupExtension(t *testing.T) {
	gopts := &GroupOptions{ExtensionTypes: []ExtensionType{0xff50}, Extensions: []Extension{{Type: 0xff50}}}
	kpOpts := func(int) *KeyPackageOptions { return &KeyPackageOptions{ExtensionTypes: []ExtensionType{0xff50}} }
	ms := m6Group(t, rfbSuite, gopts, nil, kpOpts, "alice", "bob")
	alice, bob := ms[0], ms[1]
	pc, err := bob.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	bad := rfbTamperPath(t, bob, pc.Commit, func(l *LeafNode) {
		l.Capabilities.Extensions = slices.DeleteFunc(slices.Clone(l.Capabilities.Extensions), func(e ExtensionType) bool { return e == 0xff50 })
	})
	rfbRefused(t, alice.g, bad, treekem.ErrCapabilities, "12.4.2")
	// The untampered commit is accepted.
	deliver(t, pc.Commit, alice)
}

// TestRefuseCredentialSuccessor: when a leaf is replaced (Update, commit
// path) the credential hook sees the old and the new credential (§5.3.1);
// by default a basic credential's identity (and the type) may not change.
func TestRefuseCredentialSuccessor(t *testing.T) {
	ms := m6Group(t, rfbSuite, nil, nil, nil, "alice", "bob")
	alice, bob := ms[0], ms[1]
	rename := func(l *LeafNode) { l.Credential = Credential{Type: CredentialBasic, Identity: []byte("bobby")} }

	err := rfbRefused(t, alice.g, rawProposal(t, bob.g, rfbUpdate(t, bob, rename)), ErrIdentityChanged, "12.1.2")
	require.ErrorIs(t, err, treekem.ErrCredential)
	require.True(t, rfbHasSection(err, "5.3.1"))
	toX509 := func(l *LeafNode) {
		l.Credential = Credential{Type: CredentialX509, Certificates: [][]byte{[]byte("bob")}}
	}
	rfbRefused(t, alice.g, rawProposal(t, bob.g, rfbUpdate(t, bob, toX509)), ErrIdentityChanged, "12.1.2")

	pc, err := bob.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	rfbRefused(t, alice.g, rfbTamperPath(t, bob, pc.Commit, rename), ErrIdentityChanged, "12.4.2")

	// An application hook that allows the rename, and sees both.
	var seen [][2]string
	cfg := &Config{ValidateCredentialSuccessor: func(old, new *Credential) error {
		seen = append(seen, [2]string{string(old.Identity), string(new.Identity)})
		if string(new.Identity) == "bobby" || string(new.Identity) == string(old.Identity) {
			return nil
		}
		return errors.New("not a successor")
	}}
	ms = m6Group(t, rfbSuite, nil, cfg, nil, "alice", "bob")
	alice, bob = ms[0], ms[1]
	deliver(t, rawProposal(t, bob.g, rfbUpdate(t, bob, rename)), alice)
	require.Contains(t, seen, [2]string{"bob", "bobby"})
	mallory := func(l *LeafNode) { l.Credential = Credential{Type: CredentialBasic, Identity: []byte("mallory")} }
	err = rfbRefused(t, alice.g, rawProposal(t, bob.g, rfbUpdate(t, bob, mallory)), treekem.ErrCredential, "5.3.1")
	require.ErrorContains(t, err, "not a successor")
}

// TestRefuseResyncLeaf: the leaf of an external commit that removes the
// joiner's earlier leaf meets the rules of an Update of that leaf (§12.2,
// §12.4.3.2): a valid credential successor (the application's hook), a new
// encryption key, support of the group's extensions.
func TestRefuseResyncLeaf(t *testing.T) {
	types := []ExtensionType{0xff50}
	gopts := &GroupOptions{ExtensionTypes: types, Extensions: []Extension{{Type: 0xff50}}}
	kpOpts := func(int) *KeyPackageOptions { return &KeyPackageOptions{ExtensionTypes: types} }
	var hookErr error
	cfg := &Config{ValidateCredentialSuccessor: func(old, new *Credential) error {
		if hookErr != nil {
			return hookErr
		}
		return SameIdentity(old, new)
	}}
	ms := m6Group(t, rfbSuite, gopts, cfg, kpOpts, "alice", "bob", "carol")
	alice, bob, carol := ms[0], ms[1], ms[2]
	oldBob := bob.g.OwnLeafIndex()
	oldLeaf := carol.g.state.tree.Leaf(oldBob)

	gi, err := alice.g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	joined, commit, err := JoinExternal(transmit(t, gi), bob.cred, bob.sig, &ExternalJoinOptions{Resync: true, ExtensionTypes: types}, cfg)
	require.NoError(t, err)
	at := joined.OwnLeafIndex()
	ctx := carol.g.state.ctxBytes
	gid := carol.g.GroupID()

	hookErr = errors.New("the application refuses this successor")
	err = rfbRefused(t, carol.g, commit, treekem.ErrCredential, "12.4.3.2")
	require.ErrorIs(t, err, hookErr)
	hookErr = nil

	sameKey := rfbTamperExternal(t, bob, at, ctx, gid, commit, func(l *LeafNode) { l.EncryptionKey = oldLeaf.EncryptionKey })
	rfbRefused(t, carol.g, sameKey, treekem.ErrDuplicateKey, "12.4.3.2")

	dropped := rfbTamperExternal(t, bob, at, ctx, gid, commit, func(l *LeafNode) {
		l.Capabilities.Extensions = slices.DeleteFunc(slices.Clone(l.Capabilities.Extensions), func(e ExtensionType) bool { return e == 0xff50 })
	})
	rfbRefused(t, carol.g, dropped, treekem.ErrCapabilities, "12.4.2")

	// The genuine resync is accepted.
	deliver(t, commit, alice, carol)
}

// TestRefuseOwnGREASEAsSupport: this client's own GREASE values never
// count as support for a group extension or a required capability (§13.5).
func TestRefuseOwnGREASEAsSupport(t *testing.T) {
	m := newMember(t, rfbSuite, "alice")
	const grease = ExtensionType(0x2A2A)
	caps := Capabilities{
		Versions:     []ProtocolVersion{MLS10},
		CipherSuites: []CipherSuite{rfbSuite},
		Extensions:   []ExtensionType{grease, 0xff60},
		Credentials:  []CredentialType{CredentialBasic},
	}
	g, err := NewGroup(rfbSuite, m.cred, m.sig, &GroupOptions{Capabilities: &caps, Extensions: []Extension{{Type: grease}}}, nil)
	require.Nil(t, g)
	require.ErrorIs(t, err, ErrUnsupported)
	require.True(t, rfbHasSection(err, "13.4"), "%v", err)

	rc, err := marshalRequiredCapabilitiesForTest(&RequiredCapabilities{Extensions: []ExtensionType{grease}})
	require.NoError(t, err)
	require.ErrorIs(t, checkOwnSupport(&caps, []Extension{{Type: ExtensionRequiredCapabilities, Data: rc}}), ErrUnsupported)
	require.NoError(t, checkOwnSupport(&caps, []Extension{{Type: 0xff60}}))

	// A received GroupContextExtensions proposal that every leaf
	// "supports" only through GREASE entries: the receiver refuses it for
	// itself, though the other members' lists count as usual.
	gopts := &GroupOptions{Capabilities: &caps}
	kpOpts := func(int) *KeyPackageOptions { return &KeyPackageOptions{Capabilities: &caps, NoGREASE: true} }
	ms := m6Group(t, rfbSuite, gopts, nil, kpOpts, "alice", "bob")
	alice, bob := ms[0], ms[1]
	for _, exts := range [][]Extension{
		{{Type: grease}},
		{{Type: ExtensionRequiredCapabilities, Data: rc}},
	} {
		gce := &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: exts}}
		rfbRefused(t, bob.g, rawProposal(t, alice.g, gce), ErrUnsupported, "12.1.7")
		_, err := alice.g.ProposeGroupContextExtensions(exts)
		require.ErrorIs(t, err, ErrUnsupported, "the sender checks its own support too")
	}
	// A real extension both list is accepted.
	deliver(t, rawProposal(t, alice.g, &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: []Extension{{Type: 0xff60}}}}), bob)
}

// TestRefuseEvenLengthRatchetTreeJoin: a joiner refuses a ratchet_tree
// whose node array has even length (§12.4.3.3), with an error matching
// ErrMalformed.
func TestRefuseEvenLengthRatchetTreeJoin(t *testing.T) {
	ms := m6Group(t, rfbSuite, nil, nil, nil, "alice", "bob")
	alice := ms[0]
	carol := newMember(t, rfbSuite, "carol")
	kp := carol.keyPackage(t, rfbSuite)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}, RatchetTreeOutOfBand: true, ForcePath: true})
	require.NoError(t, err)
	require.NoError(t, alice.g.MergePendingCommit(pc))
	// Leaves 0, 1, 2 and alice's path (nodes 1 and 3) are set. Nodes 0
	// to 3 end with the non-blank root, at an odd position.
	tree := alice.g.state.tree
	require.Equal(t, 3, tree.MemberCount())
	require.NotNil(t, tree.ParentNode(3))
	even, err := wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for i := range 4 {
				rfbAddNode(b, tree, i)
			}
		})
	})
	require.NoError(t, err)
	g, err := Join(transmit(t, pc.Welcome), kp, &JoinOptions{RatchetTree: even}, nil)
	require.Nil(t, g)
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorIs(t, err, treekem.ErrMalformed)
	g, err = Join(transmit(t, pc.Welcome), kp, &JoinOptions{RatchetTree: alice.g.RatchetTree()}, nil)
	require.NoError(t, err)
	require.NotNil(t, g)
}

// TestRefuseJoinOwnGREASEAsSupport: a joiner does not count its own GREASE
// values as support for a GroupContext extension (§13.4, §13.5), though
// every leaf of the tree lists the type. Such a group cannot be made with
// this package, so the test forces the extension into the creator's state
// before the commit that adds the joiner.
func TestRefuseJoinOwnGREASEAsSupport(t *testing.T) {
	const grease = ExtensionType(0x3A3A)
	caps := Capabilities{
		Versions:     []ProtocolVersion{MLS10},
		CipherSuites: []CipherSuite{rfbSuite},
		Extensions:   []ExtensionType{grease},
		Credentials:  []CredentialType{CredentialBasic},
	}
	alice := newMember(t, rfbSuite, "alice")
	var err error
	alice.g, err = NewGroup(rfbSuite, alice.cred, alice.sig, &GroupOptions{Capabilities: &caps}, nil)
	require.NoError(t, err)
	exts := []Extension{{Type: grease}}
	alice.g.state.extensions = exts
	alice.g.state.ctx.Extensions = exts
	carol := newMember(t, rfbSuite, "carol")
	kp, err := GenerateKeyPackage(rfbSuite, carol.cred, carol.sig, &KeyPackageOptions{Capabilities: &caps, NoGREASE: true})
	require.NoError(t, err)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	g, err := Join(transmit(t, pc.Welcome), kp, nil, nil)
	require.Nil(t, g)
	require.ErrorIs(t, err, ErrUnsupported)
	require.ErrorIs(t, err, treekem.ErrCapabilities)
	require.True(t, rfbHasSection(err, "13.4"), "%v", err)
}

// TestRefuseExternalJoinerCapabilities: an external joiner checks its own
// leaf as GenerateKeyPackage does (§7.2, §10) and that it supports the
// group's extensions (§13.4) before it sends anything.
func TestRefuseExternalJoinerCapabilities(t *testing.T) {
	gopts := &GroupOptions{ExtensionTypes: []ExtensionType{0xff70}, Extensions: []Extension{{Type: 0xff70}}}
	kpOpts := func(int) *KeyPackageOptions { return &KeyPackageOptions{ExtensionTypes: []ExtensionType{0xff70}} }
	ms := m6Group(t, rfbSuite, gopts, nil, kpOpts, "alice", "bob")
	gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	dave := newMember(t, rfbSuite, "dave")

	g, commit, err := JoinExternal(transmit(t, gi), dave.cred, dave.sig, nil, nil)
	require.Nil(t, g)
	require.Nil(t, commit)
	require.ErrorIs(t, err, ErrUnsupported)
	require.True(t, rfbHasSection(err, "13.4"), "%v", err)

	listsDefault := Capabilities{
		Versions:     []ProtocolVersion{MLS10},
		CipherSuites: []CipherSuite{rfbSuite},
		Extensions:   []ExtensionType{0xff70, ExtensionExternalPub},
		Credentials:  []CredentialType{CredentialBasic},
	}
	g, commit, err = JoinExternal(transmit(t, gi), dave.cred, dave.sig, &ExternalJoinOptions{Capabilities: &listsDefault}, nil)
	require.Nil(t, g)
	require.Nil(t, commit)
	require.ErrorIs(t, err, treekem.ErrCapabilities)
	require.True(t, rfbHasSection(err, "7.2"), "%v", err)

	g, _, err = JoinExternal(transmit(t, gi), dave.cred, dave.sig, &ExternalJoinOptions{ExtensionTypes: []ExtensionType{0xff70}}, nil)
	require.NoError(t, err)
	require.NotNil(t, g)
}
