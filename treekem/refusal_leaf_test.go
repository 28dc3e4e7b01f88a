package treekem_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// This file holds the negative tests of the leaf node rules of RFC 9420,
// Sections 7.2, 7.3, 5.3.1, 13.4 and 12.4.3.3 enforced by treekem. Every
// leaf is correctly signed, so the rule under test is the one that fires.

const refusalSuite = hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

// resignKP returns a copy of m's key_package leaf changed by f and signed
// again.
func resignKP(t *testing.T, m *member, f func(*treekem.LeafNode)) *treekem.LeafNode {
	t.Helper()
	l := *m.leaf
	l.Capabilities.Versions = slices.Clone(l.Capabilities.Versions)
	l.Capabilities.CipherSuites = slices.Clone(l.Capabilities.CipherSuites)
	l.Capabilities.Extensions = slices.Clone(l.Capabilities.Extensions)
	l.Capabilities.Credentials = slices.Clone(l.Capabilities.Credentials)
	f(&l)
	require.NoError(t, l.Sign(refusalSuite, m.signer, nil, 0))
	return &l
}

// updateLeaf returns a signed update leaf for the member at leaf l of g,
// with a fresh encryption key, changed by f.
func updateLeaf(t *testing.T, g *group, l treekem.LeafIndex, f func(*treekem.LeafNode)) *treekem.LeafNode {
	t.Helper()
	m := g.members[l]
	enc, err := g.cs.GenerateKeyPair()
	require.NoError(t, err)
	leaf := *g.tree.Leaf(l)
	leaf.EncryptionKey = enc.PublicKey()
	leaf.Source = treekem.SourceUpdate
	leaf.Lifetime = treekem.Lifetime{}
	leaf.Capabilities.Extensions = slices.Clone(leaf.Capabilities.Extensions)
	if f != nil {
		f(&leaf)
	}
	require.NoError(t, leaf.Sign(g.cs, m.signer, testGroupID, l))
	return &leaf
}

// refuseLeaf checks that ValidateLeafNode refuses leaf with an error
// matching want and ErrInvalidLeafNode, and leaves the tree as it was.
func refuseLeaf(t *testing.T, g *group, leaf *treekem.LeafNode, source treekem.LeafNodeSource, at treekem.LeafIndex, opts *treekem.ValidateOptions, want error) {
	t.Helper()
	before := g.tree.Bytes()
	err := g.tree.ValidateLeafNode(leaf, source, at, opts)
	require.ErrorIs(t, err, want)
	require.ErrorIs(t, err, treekem.ErrInvalidLeafNode)
	require.Equal(t, before, g.tree.Bytes())
}

// TestRefuseLeafVersionSuiteUnlisted: with ValidateOptions.Version set, a
// leaf must list the group's version and cipher suite (§7.2, §10, §11.1).
func TestRefuseLeafVersionSuiteUnlisted(t *testing.T) {
	g := newGroup(t, refusalSuite, 3)
	opts := g.opts()
	opts.Version = treekem.MLS10
	m := newMember(t, refusalSuite, "new")
	require.NoError(t, g.tree.ValidateLeafNode(m.leaf, treekem.SourceKeyPackage, 0, opts))

	noVersion := resignKP(t, m, func(l *treekem.LeafNode) { l.Capabilities.Versions = []treekem.ProtocolVersion{0x0002} })
	refuseLeaf(t, g, noVersion, treekem.SourceKeyPackage, 0, opts, treekem.ErrCapabilities)
	noSuite := resignKP(t, m, func(l *treekem.LeafNode) {
		l.Capabilities.CipherSuites = []hpke.CipherSuite{hpke.MLS_128_DHKEMP256_AES128GCM_SHA256_P256}
	})
	refuseLeaf(t, g, noSuite, treekem.SourceKeyPackage, 0, opts, treekem.ErrCapabilities)
	// The same leaves as an Update of leaf 1.
	refuseLeaf(t, g, updateLeaf(t, g, 1, func(l *treekem.LeafNode) { l.Capabilities.CipherSuites = nil }), treekem.SourceUpdate, 1, opts, treekem.ErrCapabilities)
	refuseLeaf(t, g, updateLeaf(t, g, 1, func(l *treekem.LeafNode) { l.Capabilities.Versions = nil }), treekem.SourceUpdate, 1, opts, treekem.ErrCapabilities)

	// Without Version (trees received when joining) the rule is off.
	opts.Version = 0
	require.NoError(t, g.tree.ValidateLeafNode(noSuite, treekem.SourceKeyPackage, 0, opts))
}

// TestRefuseLeafGroupExtensionUnsupported: every leaf supports the
// GroupContext extensions in use (§13.4); an Update may not drop one.
func TestRefuseLeafGroupExtensionUnsupported(t *testing.T) {
	g := newGroup(t, refusalSuite, 3)
	opts := g.opts()
	opts.GroupExtensions = []treekem.ExtensionType{0xff00, treekem.ExtensionExternalSenders}
	m := newMember(t, refusalSuite, "new")
	require.NoError(t, g.tree.ValidateLeafNode(m.leaf, treekem.SourceKeyPackage, 0, opts), "0xff00 listed, external_senders is a default type")
	require.NoError(t, g.tree.ValidateLeafNode(updateLeaf(t, g, 1, nil), treekem.SourceUpdate, 1, opts))

	drop := func(l *treekem.LeafNode) {
		l.Capabilities.Extensions = nil
		l.Extensions = nil
	}
	refuseLeaf(t, g, resignKP(t, m, drop), treekem.SourceKeyPackage, 0, opts, treekem.ErrCapabilities)
	refuseLeaf(t, g, updateLeaf(t, g, 1, drop), treekem.SourceUpdate, 1, opts, treekem.ErrCapabilities)

	// The whole tree is held to it too (a joiner's check).
	opts.GroupExtensions = []treekem.ExtensionType{0xff07}
	err := g.tree.Validate(opts)
	require.ErrorIs(t, err, treekem.ErrCapabilities)
	require.ErrorIs(t, err, treekem.ErrInvalidTree)
}

// TestRefuseLeafUnlistedExtensionManyTypes: a leaf's extensions must be
// listed in its capabilities (§7.2, §7.3), checked in linear time: a leaf
// listing and using tens of thousands of types is accepted, one unlisted
// type among them refused.
func TestRefuseLeafUnlistedExtensionManyTypes(t *testing.T) {
	g := newGroup(t, refusalSuite, 2)
	m := newMember(t, refusalSuite, "big")
	const n = 20000
	big := func(unlisted bool) *treekem.LeafNode {
		return resignKP(t, m, func(l *treekem.LeafNode) {
			l.Capabilities.Extensions = nil
			l.Extensions = nil
			for i := range n {
				typ := treekem.ExtensionType(0x1000 + i)
				l.Capabilities.Extensions = append(l.Capabilities.Extensions, typ)
				l.Extensions = append(l.Extensions, treekem.Extension{Type: typ})
			}
			if unlisted {
				l.Capabilities.Extensions = l.Capabilities.Extensions[1:]
			}
		})
	}
	require.NoError(t, g.tree.ValidateLeafNode(big(false), treekem.SourceKeyPackage, 0, g.opts()))
	refuseLeaf(t, g, big(true), treekem.SourceKeyPackage, 0, g.opts(), treekem.ErrCapabilities)
}

// BenchmarkValidateLeafManyExtensions measures leaf validation of a leaf
// with 65,000 extensions, all listed: linear, not quadratic.
func BenchmarkValidateLeafManyExtensions(b *testing.B) {
	g := newGroup(b, refusalSuite, 2)
	m := newMember(b, refusalSuite, "big")
	l := *m.leaf
	l.Capabilities.Extensions = nil
	l.Extensions = nil
	for i := range 65000 {
		typ := treekem.ExtensionType(0x0100 + i)
		l.Capabilities.Extensions = append(l.Capabilities.Extensions, typ)
		l.Extensions = append(l.Extensions, treekem.Extension{Type: typ})
	}
	if err := l.Sign(refusalSuite, m.signer, nil, 0); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := g.tree.ValidateLeafNode(&l, treekem.SourceKeyPackage, 0, g.opts()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRequiredCapabilitiesLong checks SatisfiedBy on lists long enough
// for the set-based path.
func TestRequiredCapabilitiesLong(t *testing.T) {
	var caps treekem.Capabilities
	for i := range 200 {
		caps.Extensions = append(caps.Extensions, treekem.ExtensionType(0x2000+i))
		caps.Proposals = append(caps.Proposals, treekem.ProposalType(0x2000+i))
		caps.Credentials = append(caps.Credentials, treekem.CredentialType(0x2000+i))
	}
	rc := &treekem.RequiredCapabilities{
		Extensions:  []treekem.ExtensionType{0x2000, 0x20c7, treekem.ExtensionRatchetTree},
		Proposals:   []treekem.ProposalType{0x2001, 0x0007},
		Credentials: []treekem.CredentialType{0x2002},
	}
	assert.True(t, rc.SatisfiedBy(&caps))
	for _, broken := range []func(r *treekem.RequiredCapabilities){
		func(r *treekem.RequiredCapabilities) { r.Extensions = append(r.Extensions, 0x3000) },
		func(r *treekem.RequiredCapabilities) { r.Proposals = append(r.Proposals, 0x3000) },
		// Credential types have no defaults.
		func(r *treekem.RequiredCapabilities) { r.Credentials = append(r.Credentials, treekem.CredentialBasic) },
	} {
		r := *rc
		broken(&r)
		assert.False(t, r.SatisfiedBy(&caps))
	}
	_, missing := caps.UnsupportedExtension([]treekem.ExtensionType{0x2005, treekem.ExtensionApplicationID})
	assert.False(t, missing)
	typ, missing := caps.UnsupportedExtension([]treekem.ExtensionType{0x2005, 0x4000})
	assert.True(t, missing)
	assert.Equal(t, treekem.ExtensionType(0x4000), typ)

	// Both lists long: the bitmap path, default types still implied.
	var want []treekem.ExtensionType
	for i := range 20 {
		want = append(want, treekem.ExtensionType(0x2000+3*i))
	}
	want = append(want, treekem.ExtensionApplicationID)
	_, missing = caps.UnsupportedExtension(want)
	assert.False(t, missing)
	want = append(want, 0x20c8)
	typ, missing = caps.UnsupportedExtension(want)
	assert.True(t, missing)
	assert.Equal(t, treekem.ExtensionType(0x20c8), typ)
}

// TestRefuseUpdateNotSuccessor: a leaf that replaces another (Update,
// commit) goes through ValidateOptions.Successor with the old and the new
// node (§5.3.1); its error refuses the leaf. Additions do not call it.
func TestRefuseUpdateNotSuccessor(t *testing.T) {
	g := newGroup(t, refusalSuite, 3)
	opts := g.opts()
	var calls int
	var gotOld, gotNew *treekem.LeafNode
	opts.Successor = func(at treekem.LeafIndex, old, new *treekem.LeafNode) error {
		calls++
		gotOld, gotNew = old, new
		if string(new.Credential.Identity) != string(old.Credential.Identity) {
			return errors.New("identity changed")
		}
		return nil
	}
	ok := updateLeaf(t, g, 1, nil)
	require.NoError(t, g.tree.ValidateLeafNode(ok, treekem.SourceUpdate, 1, opts))
	require.Equal(t, 1, calls)
	require.Same(t, g.tree.Leaf(1), gotOld)
	require.Same(t, ok, gotNew)

	renamed := updateLeaf(t, g, 1, func(l *treekem.LeafNode) { l.Credential.Identity = []byte("mallory") })
	refuseLeaf(t, g, renamed, treekem.SourceUpdate, 1, opts, treekem.ErrCredential)

	calls = 0
	require.NoError(t, g.tree.ValidateLeafNode(newMember(t, refusalSuite, "new").leaf, treekem.SourceKeyPackage, 0, opts))
	require.Zero(t, calls, "an Add replaces nobody")
}

// TestRefuseEvenLengthRatchetTree: a ratchet_tree node array of even length
// is malformed (§12.4.3.3), even when its last node is a non-blank parent.
func TestRefuseEvenLengthRatchetTree(t *testing.T) {
	g := newGroup(t, refusalSuite, 2)
	g.commitLocal(t, 0)
	p := g.tree.ParentNode(1)
	require.NotNil(t, p)
	encode := func(withLastLeaf bool) []byte {
		return wire.MustMarshal(func(b *cryptobyte.Builder) {
			wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
				b.AddUint8(1)
				b.AddUint8(uint8(treekem.NodeTypeLeaf))
				g.tree.Leaf(0).Marshal(b)
				b.AddUint8(1)
				b.AddUint8(uint8(treekem.NodeTypeParent))
				p.Marshal(b)
				if withLastLeaf {
					b.AddUint8(1)
					b.AddUint8(uint8(treekem.NodeTypeLeaf))
					g.tree.Leaf(1).Marshal(b)
				}
			})
		})
	}
	tree, err := treekem.ParseTree(refusalSuite, encode(true))
	require.NoError(t, err)
	require.Equal(t, g.tree.TreeHash(), tree.TreeHash())

	tree, err = treekem.ParseTree(refusalSuite, encode(false))
	require.Nil(t, tree)
	require.ErrorIs(t, err, treekem.ErrMalformed)
	require.ErrorIs(t, err, treekem.ErrInvalidTree)
}
