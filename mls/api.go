package mls

import "fmt"

// This file holds conveniences for applications: validating a received
// KeyPackage before using it, finding members, and reading the cipher
// suite of a message before joining with it.

// Validate checks a KeyPackage received from the delivery service as a
// member must before adding its owner (RFC 9420, §10.1): the version and a
// supported cipher suite, both signatures (the KeyPackage's and its leaf
// node's), the leaf node's source, an init key that is a valid public key
// distinct from the leaf's encryption key, no duplicate extensions, every
// extension listed in the leaf's capabilities, capabilities that list the
// KeyPackage's version and suite, and a lifetime that contains the current
// time and is no longer than [Config.MaxLeafLifetime]. If
// cfg.ValidateCredential is set, the credential must pass it too. cfg may
// be nil for the defaults.
//
// [Group.Commit] and [Group.Process] run the same checks, and those that
// depend on the group (its required capabilities, its extensions in use,
// uniqueness of keys in the tree) when the KeyPackage is used.
func (kp *KeyPackage) Validate(cfg *Config) error {
	if kp == nil {
		return fmt.Errorf("%w: no KeyPackage", ErrMalformed)
	}
	g := &Group{}
	if cfg != nil {
		g.cfg = *cfg
	}
	if err := g.verifyKeyPackage(kp); err != nil {
		return err
	}
	if cfg != nil && cfg.ValidateCredential != nil {
		if err := cfg.ValidateCredential(&kp.LeafNode.Credential, kp.LeafNode.SignatureKey); err != nil {
			return &ValidationError{Section: "5.3.1", Err: fmt.Errorf("credential rejected: %w", err)}
		}
	}
	return nil
}

// Member returns the member at leaf, or false if the leaf is blank or out
// of range.
func (g *Group) Member(leaf LeafIndex) (Member, bool) {
	if g.needTree() != nil || !g.state.tree.HasLeaf(leaf) {
		return Member{}, false
	}
	l := g.state.tree.Leaf(leaf)
	if l == nil {
		return Member{}, false
	}
	return Member{Index: leaf, Credential: l.Credential, SignatureKey: l.SignatureKey}, true
}

// MembersByCredential returns the members whose credential has the same
// type and identity as c (the same basic identity, the same end-entity
// certificate), in leaf order: one per device of a user. It uses the
// group's index: its cost does not grow with the group.
func (g *Group) MembersByCredential(c Credential) []Member {
	if g.needTree() != nil {
		return nil
	}
	var out []Member
	for _, i := range g.state.tree.FindIdentity(&c) {
		if m, ok := g.Member(i); ok {
			out = append(out, m)
		}
	}
	return out
}

// MembersByIdentity returns the members with a basic credential for
// identity (see [Group.MembersByCredential]).
func (g *Group) MembersByIdentity(identity []byte) []Member {
	return g.MembersByCredential(Credential{Type: CredentialBasic, Identity: identity})
}

// CipherSuite returns the cipher suite a message is for: the group's for a
// GroupInfo, a Welcome's, a KeyPackage's. It returns false for group
// messages (PublicMessage, PrivateMessage), whose suite is the group's.
// Use it to pick the signature key to join with.
func (m *MLSMessage) CipherSuite() (CipherSuite, bool) {
	switch {
	case m == nil:
		return 0, false
	case m.GroupInfo != nil:
		return m.GroupInfo.GroupContext.CipherSuite, true
	case m.Welcome != nil:
		return m.Welcome.CipherSuite, true
	case m.KeyPackage != nil:
		return m.KeyPackage.CipherSuite, true
	}
	return 0, false
}

// Message wraps w in an [MLSMessage], as [Join] and the wire expect.
func (w *Welcome) Message() *MLSMessage {
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatWelcome, Welcome: w}
}

// Message wraps gi in an [MLSMessage], as [JoinExternal] and the wire
// expect.
func (gi *GroupInfo) Message() *MLSMessage {
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatGroupInfo, GroupInfo: gi}
}

// Message wraps kp in an [MLSMessage], as KeyPackages are published.
func (kp *KeyPackage) Message() *MLSMessage {
	return &MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp}
}
