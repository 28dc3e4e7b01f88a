package mls

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/treekem"
)

// Refusals of external commits that break RFC 9420, §12.2 and §12.4.3.2.
// Each is a real external commit by eve, changed and signed again with
// eve's key (the key of its path's leaf), so the check under test fires.

// externalCommit returns alice, bob and carol in a group and eve's
// genuine external commit to it.
func externalCommit(t *testing.T, opts *ExternalJoinOptions) ([]*member, *member, *MLSMessage) {
	t.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := threeMembers(t, nil)
	gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	eve := newMember(t, cs, "eve")
	_, commit, err := JoinExternal(transmit(t, gi), eve.cred, eve.sig, opts, nil)
	require.NoError(t, err)
	return ms, eve, commit
}

// editExternal returns commit after edit, signed again by signer.
func editExternal(t *testing.T, g *Group, signer *member, commit *MLSMessage, edit func(c *Commit)) *MLSMessage {
	t.Helper()
	m := transmit(t, commit)
	c := m.PublicMessage.Content
	edit(c.Commit)
	return sealAs(t, g, signer.sig, WireFormatPublicMessage, c, m.PublicMessage.Auth.ConfirmationTag)
}

func TestRefuseExternalCommit(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	prepend := func(p *Proposal) func(c *Commit) {
		return func(c *Commit) {
			c.Proposals = append([]ProposalOrRef{{Type: ProposalOrRefProposal, Proposal: p}}, c.Proposals...)
		}
	}
	cases := []struct {
		name string
		edit func(t *testing.T, ms []*member, c *Commit)
		want []any
	}{
		{"without-external-init", func(t *testing.T, ms []*member, c *Commit) {
			c.Proposals = c.Proposals[1:]
		}, []any{"12.4.3.2"}},
		{"two-external-inits", func(t *testing.T, ms []*member, c *Commit) {
			c.Proposals = append(c.Proposals, c.Proposals[0])
		}, []any{"12.2"}},
		{"add", func(t *testing.T, ms []*member, c *Commit) {
			prepend(addOf(newMember(t, cs, "dave").keyPackage(t, cs).KeyPackage))(c)
		}, []any{"12.4.3.2"}},
		{"update", func(t *testing.T, ms []*member, c *Commit) {
			// Refused as an Update from a non-member, before its leaf
			// is even looked at.
			upd, _ := cachedUpdate(t, ms[2])
			prepend(upd)(c)
		}, []any{"12.1.2", notErr{treekem.ErrInvalidLeafNode}}},
		{"two-removes", func(t *testing.T, ms []*member, c *Commit) {
			prepend(removeOf(1))(c)
			prepend(removeOf(2))(c)
		}, []any{"12.4.3.2"}},
		{"by-reference", func(t *testing.T, ms []*member, c *Commit) {
			_, ref := cachedUpdate(t, ms[2], ms[1].g)
			c.Proposals = append(c.Proposals, refTo(ref))
		}, []any{"12.4.3.2"}},
		{"resync-other-identity", func(t *testing.T, ms []*member, c *Commit) {
			// eve removes carol, as if she were carol resyncing.
			prepend(removeOf(2))(c)
		}, []any{"12.4.3.2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, eve, commit := externalCommit(t, nil)
			bad := editExternal(t, ms[0].g, eve, commit, func(cm *Commit) { c.edit(t, ms, cm) })
			refused(t, ms[1].g, bad, c.want...)
			_, err := ms[1].g.Process(transmit(t, commit))
			require.NoError(t, err, "the genuine external commit")
		})
	}
	t.Run("signed-by-another-key", func(t *testing.T) {
		// §12.4.3.2: the signature must verify with the path leaf's key.
		ms, _, commit := externalCommit(t, nil)
		bad := editExternal(t, ms[0].g, ms[2], commit, func(*Commit) {})
		refused(t, ms[1].g, bad, ErrInvalidSignature)
	})
}

func TestRefuseCommitContent(t *testing.T) {
	t.Run("group-context-extensions-unsupported-by-value", func(t *testing.T) {
		// §12.1.7 in a commit: the members do not support testExtension.
		ms := threeMembers(t, nil)
		gce := &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{
			Extensions: []Extension{{Type: testExtension, Data: []byte("x")}},
		}}
		refused(t, ms[1].g, forgeCommit(t, ms[0].g, WireFormatPublicMessage, byValue(gce)), "12.1.7", ErrUnsupported)
	})
	t.Run("own-update-key-missing", func(t *testing.T) {
		// bob's Update is committed by alice, but bob no longer holds the
		// private key he generated for it.
		ms := threeMembers(t, nil)
		cachedUpdate(t, ms[1], ms[0].g)
		pc, err := ms[0].g.Commit(nil)
		require.NoError(t, err)
		ms[1].g.pendingUpdates = nil
		refused(t, ms[1].g, pc.Commit, ErrNotFound)
	})
	t.Run("sender-data-leaf-out-of-range", func(t *testing.T) {
		ms := threeMembers(t, nil)
		g := ms[0].g
		c := g.framedContent(nil)
		c.ContentType = ContentTypeApplication
		c.ApplicationData = []byte("x")
		pt := privateContent(t, g, g.sigPriv, c)
		sd := []byte{0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}
		refused(t, ms[1].g, sealPrivateRaw(t, g, 0, ContentTypeApplication, nil, pt, sd), "6.3.2", ErrLeafIndexRange)
	})
}

func TestRefuseUpdateKeyCollision(t *testing.T) {
	// bob copies the encryption key of carol's pending Update into his
	// own Update. Each is valid against the current tree, but committed
	// together they would put one key in two leaves (§7.3, §12.1.2).
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := threeMembers(t, nil)
	alice, bob, carol := ms[0], ms[1], ms[2]
	updC, refC := cachedUpdate(t, carol, alice.g)
	leaf := *bob.g.state.tree.Leaf(bob.g.OwnLeafIndex())
	leaf.EncryptionKey = updC.Update.LeafNode.EncryptionKey
	leaf.Source = updC.Update.LeafNode.Source
	leaf.Lifetime = updC.Update.LeafNode.Lifetime
	leaf.ParentHash = nil
	require.NoError(t, leaf.Sign(cs, bob.sig, bob.g.GroupID(), bob.g.OwnLeafIndex()))
	msg := forgeProposal(t, bob.g, WireFormatPublicMessage, &Proposal{Type: ProposalTypeUpdate, Update: &UpdateProposal{LeafNode: leaf}})
	res, err := alice.g.Process(transmit(t, msg))
	require.NoError(t, err, "bob's Update alone is valid")
	// carol receives both Updates too, and alice's commit of both.
	_, err = carol.g.Process(transmit(t, msg))
	require.NoError(t, err)
	c := &Commit{Proposals: []ProposalOrRef{refTo(refC), refTo(res.ProposalRef)}}
	refused(t, carol.g, forgeCommit(t, alice.g, WireFormatPublicMessage, c), "12.1.2", treekem.ErrDuplicateKey)
}

func TestRefuseOwnExternalLeaf(t *testing.T) {
	// §7.2: the joiner's own leaf must list the group's version and
	// suite and its credential type, and no default extension type.
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	ms := threeMembers(t, nil)
	gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	eve := newMember(t, cs, "eve")
	good := Capabilities{Versions: []ProtocolVersion{MLS10}, CipherSuites: []CipherSuite{cs}, Credentials: []CredentialType{CredentialBasic}}
	for name, edit := range map[string]func(c *Capabilities){
		"no-suite":          func(c *Capabilities) { c.CipherSuites = nil },
		"no-credential":     func(c *Capabilities) { c.Credentials = nil },
		"default-extension": func(c *Capabilities) { c.Extensions = []ExtensionType{ExtensionApplicationID} },
	} {
		t.Run(name, func(t *testing.T) {
			caps := good
			edit(&caps)
			_, _, err := JoinExternal(transmit(t, gi), eve.cred, eve.sig, &ExternalJoinOptions{Capabilities: &caps}, nil)
			requireMatches(t, err, treekem.ErrCapabilities)
		})
	}
	_, _, err = JoinExternal(transmit(t, gi), eve.cred, eve.sig, &ExternalJoinOptions{Capabilities: &good}, nil)
	require.NoError(t, err)
}

func TestRefuseOwnResync(t *testing.T) {
	// A resync is refused by the joiner itself when its application does
	// not accept the new leaf as a successor of the old one (§12.2).
	ms := threeMembers(t, nil)
	gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	carol := ms[2]
	cfg := &Config{ValidateCredentialSuccessor: func(old, new *Credential) error { return ErrIdentityChanged }}
	_, _, err = JoinExternal(transmit(t, gi), carol.cred, carol.sig, &ExternalJoinOptions{Resync: true}, cfg)
	requireMatches(t, err, ErrIdentityChanged)
	_, _, err = JoinExternal(transmit(t, gi), carol.cred, carol.sig, &ExternalJoinOptions{Resync: true}, nil)
	require.NoError(t, err)
}

func TestRefuseExternalCommitRules(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	t.Run("psk-by-reference", func(t *testing.T) {
		// A PreSharedKey proposal may be in an external commit, but not
		// by reference (§12.4.3.2).
		ms, eve, commit := externalCommit(t, nil)
		msg := forgeProposal(t, ms[2].g, WireFormatPublicMessage, externalPSKOf(cs, "k"))
		res, err := ms[0].g.Process(transmit(t, msg))
		require.NoError(t, err)
		bad := editExternal(t, ms[0].g, eve, commit, func(c *Commit) { c.Proposals = append(c.Proposals, refTo(res.ProposalRef)) })
		refused(t, ms[0].g, bad, "12.4.3.2")
	})
	t.Run("two-removes-same-identity", func(t *testing.T) {
		// Two leaves of eve's identity: removing both in one external
		// commit is refused even though each would be a valid resync.
		ms := m6Group(t, cs, nil, nil, nil, "alice", "bob", "eve", "eve")
		gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
		require.NoError(t, err)
		eve := newMember(t, cs, "eve")
		_, commit, err := JoinExternal(transmit(t, gi), eve.cred, eve.sig, nil, nil)
		require.NoError(t, err)
		bad := editExternal(t, ms[0].g, eve, commit, func(c *Commit) {
			c.Proposals = append(c.Proposals,
				ProposalOrRef{Type: ProposalOrRefProposal, Proposal: removeOf(2)},
				ProposalOrRef{Type: ProposalOrRefProposal, Proposal: removeOf(3)})
		})
		refused(t, ms[1].g, bad, "12.4.3.2")
	})
}

func TestRefuseGroupContextExtensionsPartialSupport(t *testing.T) {
	// alice and bob support testExtension, carol does not: bob, who
	// supports it himself, must still refuse it for carol (§12.1.7).
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	kpOpts := func(i int) *KeyPackageOptions {
		if i == 2 {
			return nil
		}
		return &KeyPackageOptions{ExtensionTypes: []ExtensionType{testExtension}}
	}
	ms := m6Group(t, cs, &GroupOptions{ExtensionTypes: []ExtensionType{testExtension}}, nil, kpOpts, "alice", "bob", "carol")
	gce := func(exts ...Extension) *Proposal {
		return &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensionsProposal{Extensions: exts}}
	}
	refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, gce(Extension{Type: testExtension, Data: []byte("x")})), "12.1.7", ErrUnsupported)
	rc := requiredCapabilities(t, &RequiredCapabilities{Extensions: []ExtensionType{testExtension}})
	refused(t, ms[1].g, forgeProposal(t, ms[0].g, WireFormatPublicMessage, gce(rc)), "12.1.7", ErrUnsupported)
}

func TestSameIdentity(t *testing.T) {
	// The default successor rule (§5.3.1): same type and identity.
	basic := &Credential{Type: CredentialBasic, Identity: []byte("carol")}
	require.NoError(t, SameIdentity(basic, &Credential{Type: CredentialBasic, Identity: []byte("carol")}))
	require.ErrorIs(t, SameIdentity(basic, &Credential{Type: CredentialBasic, Identity: []byte("mallory")}), ErrIdentityChanged)
	require.ErrorIs(t, SameIdentity(basic, &Credential{Type: 0x0a0a, Identity: []byte("carol")}), ErrIdentityChanged)
}
