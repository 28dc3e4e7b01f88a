package mls

import (
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// ExtensionLastResort marks a KeyPackage that may be used more than once,
// when a client has no other left (the last_resort extension of the MLS
// extensions registry, 0x000A).
const ExtensionLastResort ExtensionType = 0x000A

// DefaultKeyPackageLifetime is the lifetime of a KeyPackage when
// [KeyPackageOptions.Lifetime] is zero: 12 weeks, which with the hour of
// clock-skew allowance stays within [DefaultMaxLeafLifetime] and within
// the maximum of implementations that accept 12 weeks and an hour.
const DefaultKeyPackageLifetime = 12 * 7 * 24 * time.Hour

// KeyPackageOptions are the optional parameters of [GenerateKeyPackage].
type KeyPackageOptions struct {
	// Now is the time the lifetime starts from; the default is time.Now.
	Now func() time.Time
	// Lifetime is how long the KeyPackage is valid; the lifetime starts an
	// hour before Now to allow for clock skew. Zero selects
	// DefaultKeyPackageLifetime; it must not be negative. Receivers refuse
	// KeyPackages whose total lifetime exceeds their
	// [Config.MaxLeafLifetime] (by default [DefaultMaxLeafLifetime]).
	Lifetime time.Duration
	// Capabilities overrides the advertised capabilities. The default
	// lists MLS 1.0, the KeyPackage's cipher suite, basic and X.509
	// credentials, the extension and proposal types below, the types of
	// the non-default extensions in Extensions and LeafExtensions, and
	// GREASE values. Explicit capabilities must meet the rules of RFC
	// 9420, §7.2 and §10 (see [GenerateKeyPackage]).
	Capabilities *Capabilities
	// Extensions are KeyPackage extensions.
	Extensions []Extension
	// LeafExtensions are extensions of the leaf node.
	LeafExtensions []Extension
	// ExtensionTypes and ProposalTypes are non-default types the client
	// supports, added to the default capabilities. Default types (RFC
	// 9420, §7.2) are implied and left out.
	ExtensionTypes []ExtensionType
	ProposalTypes  []ProposalType
	// LastResort adds the last_resort extension.
	LastResort bool
	// NoGREASE turns off the GREASE values (RFC 9420, §13.5) that are
	// otherwise added to the capabilities and extensions.
	NoGREASE bool
}

// greaseValue returns a random GREASE value of RFC 9420, §13.5: 0x?A?A.
func greaseValue() uint16 {
	var b [1]byte
	rand.Read(b[:])
	n := uint16(b[0] % 15)
	return 0x0A0A + n*0x1010
}

// greaseExtension returns an extension of a random GREASE type with a few
// random bytes of data, for GroupInfo extensions, where RFC 9420, §13.5
// asks for GREASE and no capabilities need to list it.
func greaseExtension() Extension {
	return greaseExtensionOf(ExtensionType(greaseValue()))
}

// greaseExtensionOf returns an extension of GREASE type t with a few random
// bytes of data (§13.5 lets the sender choose any).
func greaseExtensionOf(t ExtensionType) Extension {
	var n [1]byte
	rand.Read(n[:])
	data := make([]byte, n[0]%8)
	rand.Read(data)
	return Extension{Type: t, Data: data}
}

// addGREASEExtension adds to exts a GREASE extension of a GREASE type that
// caps lists and exts does not use yet (an extension in a leaf node or
// KeyPackage must be listed in the leaf's capabilities, §7.2, §10, §13.5),
// unless exts already has a GREASE extension or caps lists no such type.
func addGREASEExtension(caps *Capabilities, exts []Extension) []Extension {
	for _, e := range exts {
		if IsGREASE(uint16(e.Type)) {
			return exts
		}
	}
	for _, t := range caps.Extensions {
		if IsGREASE(uint16(t)) {
			return append(slices.Clip(exts), greaseExtensionOf(t))
		}
	}
	return exts
}

// IsGREASE reports whether v is a GREASE value (RFC 9420, §13.5).
func IsGREASE(v uint16) bool { return v&0x0F0F == 0x0A0A && v>>12 == (v>>4)&0xF }

// appendNew appends to list the values of add that are not default (per
// isDefault) and not in list yet.
func appendNew[T ~uint16](list []T, isDefault func(T) bool, add ...T) []T {
	for _, t := range add {
		if !isDefault(t) && !slices.Contains(list, t) {
			list = append(list, t)
		}
	}
	return list
}

// greaseNotIn returns a random GREASE value that list does not hold yet.
func greaseNotIn[T ~uint16](list []T) T {
	for {
		if v := T(greaseValue()); !slices.Contains(list, v) {
			return v
		}
	}
}

// defaultCapabilities returns the capabilities of a leaf this client
// creates (RFC 9420, §7.2): MLS 1.0 and cs, basic and X.509 credentials,
// the non-default extension and proposal types of opts, including those of
// the extensions it carries, and a GREASE value in each list but the
// versions (§13.5) unless opts.NoGREASE.
func defaultCapabilities(cs CipherSuite, opts *KeyPackageOptions) Capabilities {
	c := Capabilities{
		Versions:     []ProtocolVersion{MLS10},
		CipherSuites: []CipherSuite{cs},
		Credentials:  []CredentialType{CredentialBasic, CredentialX509},
	}
	if opts != nil {
		c.Extensions = appendNew(c.Extensions, ExtensionType.IsDefault, opts.ExtensionTypes...)
		c.Extensions = appendNew(c.Extensions, ExtensionType.IsDefault, treekem.ExtensionTypes(opts.Extensions)...)
		c.Extensions = appendNew(c.Extensions, ExtensionType.IsDefault, treekem.ExtensionTypes(opts.LeafExtensions)...)
		c.Proposals = appendNew(c.Proposals, ProposalType.IsDefault, opts.ProposalTypes...)
		if opts.LastResort {
			c.Extensions = appendNew(c.Extensions, ExtensionType.IsDefault, ExtensionLastResort)
		}
	}
	if opts == nil || !opts.NoGREASE {
		c.CipherSuites = append(c.CipherSuites, greaseNotIn(c.CipherSuites))
		c.Extensions = append(c.Extensions, greaseNotIn(c.Extensions))
		c.Proposals = append(c.Proposals, greaseNotIn(c.Proposals))
		c.Credentials = append(c.Credentials, greaseNotIn(c.Credentials))
	}
	return c
}

// withoutGREASE returns a copy of c without its GREASE values: this
// client's real capabilities. RFC 9420, §13.5 forbids counting a GREASE
// value as support when a client compares its own capabilities with what
// a group uses or requires.
func withoutGREASE(c *Capabilities) *Capabilities {
	return &Capabilities{
		Versions:     c.Versions,
		CipherSuites: slices.DeleteFunc(slices.Clone(c.CipherSuites), func(v CipherSuite) bool { return IsGREASE(uint16(v)) }),
		Extensions:   slices.DeleteFunc(slices.Clone(c.Extensions), func(v ExtensionType) bool { return IsGREASE(uint16(v)) }),
		Proposals:    slices.DeleteFunc(slices.Clone(c.Proposals), func(v ProposalType) bool { return IsGREASE(uint16(v)) }),
		Credentials:  slices.DeleteFunc(slices.Clone(c.Credentials), func(v CredentialType) bool { return IsGREASE(uint16(v)) }),
	}
}

// checkOwnSupport checks, with this client's real capabilities (caps
// without GREASE values, §13.5), that it supports every GroupContext
// extension in exts (§13.4) and meets their required_capabilities
// (§11.1). It is for this client's own leaf; other members' leaves are
// checked with ordinary logic, GREASE values included.
func checkOwnSupport(caps *Capabilities, exts []Extension) error {
	own := withoutGREASE(caps)
	if t, missing := own.UnsupportedExtension(treekem.ExtensionTypes(exts)); missing {
		return &ValidationError{Section: "13.4", Err: fmt.Errorf("%w: %w: this client does not support group extension %d", ErrUnsupported, treekem.ErrCapabilities, t)}
	}
	if data, ok := findExtension(exts, ExtensionRequiredCapabilities); ok {
		rc, err := unmarshalRequiredCapabilities(data)
		if err != nil {
			return err
		}
		if !rc.SatisfiedBy(own) {
			return &ValidationError{Section: "11.1", Err: fmt.Errorf("%w: %w: this client lacks a required capability", ErrUnsupported, treekem.ErrCapabilities)}
		}
	}
	return nil
}

// checkCapabilitiesListing checks the rules of RFC 9420, §7.2 and §10 on
// the capabilities of a leaf node this client creates, with the KeyPackage
// extensions kpExts (nil outside a KeyPackage): they list MLS 1.0, the
// group's cipher suite cs and the leaf's credential type; they list no
// default extension or proposal type; and every non-default type of the
// leaf's and the KeyPackage's extensions is listed. Errors are
// [ValidationError]s that match [treekem.ErrCapabilities].
func checkCapabilitiesListing(cs CipherSuite, leaf *LeafNode, kpExts []Extension) error {
	caps := &leaf.Capabilities
	bad := func(section, format string, args ...any) error {
		return &ValidationError{Section: section, Err: fmt.Errorf("%w: %s", treekem.ErrCapabilities, fmt.Sprintf(format, args...))}
	}
	if !slices.Contains(caps.Versions, MLS10) || !slices.Contains(caps.CipherSuites, cs) {
		return bad("10", "capabilities do not list protocol version %d and cipher suite %v", MLS10, cs)
	}
	if !caps.SupportsCredential(leaf.Credential.Type) {
		return bad("7.2", "capabilities do not list the credential type %d", leaf.Credential.Type)
	}
	if i := slices.IndexFunc(caps.Extensions, ExtensionType.IsDefault); i >= 0 {
		return bad("7.2", "capabilities list the default extension type %d", caps.Extensions[i])
	}
	if i := slices.IndexFunc(caps.Proposals, ProposalType.IsDefault); i >= 0 {
		return bad("7.2", "capabilities list the default proposal type %d", caps.Proposals[i])
	}
	if t, missing := caps.UnsupportedExtension(treekem.ExtensionTypes(leaf.Extensions)); missing {
		return bad("7.2", "leaf extension %d is not listed in the capabilities", t)
	}
	if t, missing := caps.UnsupportedExtension(treekem.ExtensionTypes(kpExts)); missing {
		return bad("10", "KeyPackage extension %d is not listed in the capabilities", t)
	}
	return nil
}

// newLeafNode builds an unsigned leaf node with a fresh encryption key.
func newLeafNode(cs CipherSuite, cred Credential, sig *hpke.SignaturePrivateKey, caps Capabilities, exts []Extension) (*LeafNode, *hpke.PrivateKey, error) {
	encKey, err := cs.GenerateKeyPair()
	if err != nil {
		return nil, nil, err
	}
	return &LeafNode{
		EncryptionKey: encKey.PublicKey(),
		SignatureKey:  sig.PublicKey(),
		Credential:    cred,
		Capabilities:  caps,
		Extensions:    exts,
	}, encKey, nil
}

// GenerateKeyPackage creates a KeyPackage for the member with credential
// cred and signature key sig (RFC 9420, §10), with fresh init and
// encryption keys. Publish KeyPackage.KeyPackage; keep the rest secret.
func GenerateKeyPackage(cs CipherSuite, cred Credential, sig *hpke.SignaturePrivateKey, opts *KeyPackageOptions) (*KeyPackagePrivate, error) {
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, cs)
	}
	if sig == nil || sig.Suite() != cs {
		return nil, fmt.Errorf("mls: signature key is not of cipher suite %v", cs)
	}
	if opts == nil {
		opts = &KeyPackageOptions{}
	}
	if opts.Lifetime < 0 {
		return nil, fmt.Errorf("mls: negative KeyPackage lifetime %v", opts.Lifetime)
	}
	caps := defaultCapabilities(cs, opts)
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	leafExts := opts.LeafExtensions
	exts := append([]Extension(nil), opts.Extensions...)
	if opts.LastResort {
		exts = append(exts, Extension{Type: ExtensionLastResort, Data: []byte{}})
	}
	if !opts.NoGREASE {
		leafExts = addGREASEExtension(&caps, leafExts)
		exts = addGREASEExtension(&caps, exts)
	}
	if treekem.DuplicateExtension(leafExts) || treekem.DuplicateExtension(exts) {
		return nil, invalid("13.4", "duplicate extension")
	}
	leaf, encKey, err := newLeafNode(cs, cred, sig, caps, leafExts)
	if err != nil {
		return nil, err
	}
	if err := checkCapabilitiesListing(cs, leaf, exts); err != nil {
		return nil, err
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	lifetime := opts.Lifetime
	if lifetime == 0 {
		lifetime = DefaultKeyPackageLifetime
	}
	// Allow for clock skew: start an hour early (RFC 9420, §7.2).
	leaf.Source = treekem.SourceKeyPackage
	leaf.Lifetime = Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(lifetime).Unix())}
	if err := leaf.Sign(cs, sig, nil, 0); err != nil {
		return nil, err
	}
	initKey, err := cs.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	kp := &KeyPackage{
		Version:     MLS10,
		CipherSuite: cs,
		InitKey:     initKey.PublicKey(),
		LeafNode:    *leaf,
		Extensions:  exts,
	}
	if err := kp.sign(sig); err != nil {
		return nil, err
	}
	return &KeyPackagePrivate{KeyPackage: kp, InitKey: initKey, EncryptionKey: encKey, SignatureKey: sig}, nil
}

// IsLastResort reports whether kp carries the last_resort extension.
func (kp *KeyPackage) IsLastResort() bool {
	_, ok := findExtension(kp.Extensions, ExtensionLastResort)
	return ok
}

// GroupOptions are the optional parameters of [NewGroup].
type GroupOptions struct {
	// GroupID is the new group's ID; the default is 32 random bytes.
	GroupID []byte
	// Extensions are the group's GroupContext extensions, for instance
	// required_capabilities or external_senders.
	Extensions []Extension
	// Capabilities, ExtensionTypes and ProposalTypes are as in
	// [KeyPackageOptions], for the creator's leaf.
	Capabilities   *Capabilities
	ExtensionTypes []ExtensionType
	ProposalTypes  []ProposalType
	// LeafExtensions are extensions of the creator's leaf node.
	LeafExtensions []Extension
}

// NewGroup creates a group whose only member is the caller, with
// credential cred and signature key sig (RFC 9420, §11). The group starts
// in epoch 0.
func NewGroup(cs CipherSuite, cred Credential, sig *hpke.SignaturePrivateKey, opts *GroupOptions, cfg *Config) (*Group, error) {
	if !cs.Supported() {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, cs)
	}
	if sig == nil || sig.Suite() != cs {
		return nil, fmt.Errorf("mls: signature key is not of cipher suite %v", cs)
	}
	if opts == nil {
		opts = &GroupOptions{}
	}
	g := &Group{cs: cs, sigPriv: sig, active: true}
	if cfg != nil {
		g.cfg = *cfg
	}
	groupID := opts.GroupID
	if groupID == nil {
		groupID = make([]byte, 32)
		rand.Read(groupID)
	}
	if treekem.DuplicateExtension(opts.Extensions) {
		return nil, invalid("13.4", "duplicate extension")
	}
	kpOpts := &KeyPackageOptions{ExtensionTypes: opts.ExtensionTypes, ProposalTypes: opts.ProposalTypes, LeafExtensions: opts.LeafExtensions}
	caps := defaultCapabilities(cs, kpOpts)
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	leaf, encKey, err := newLeafNode(cs, cred, sig, caps, addGREASEExtension(&caps, opts.LeafExtensions))
	if err != nil {
		return nil, err
	}
	if err := checkCapabilitiesListing(cs, leaf, nil); err != nil {
		return nil, err
	}
	// The group's extensions must be supported by its creator (§11,
	// §13.4), GREASE values not counting (§13.5).
	if err := checkOwnSupport(&leaf.Capabilities, opts.Extensions); err != nil {
		return nil, err
	}
	now := g.cfg.now()
	leaf.Source = treekem.SourceKeyPackage
	// The creator's leaf keeps within the group's own maximum lifetime.
	lifetime := DefaultKeyPackageLifetime
	if m := g.cfg.maxLeafLifetime(); m > 0 && lifetime+time.Hour > m {
		lifetime = m - time.Hour
	}
	leaf.Lifetime = Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(lifetime).Unix())}
	if err := leaf.Sign(cs, sig, nil, 0); err != nil {
		return nil, err
	}
	tree := treekem.NewTree(cs)
	vopts, err := g.validateOptions(groupID, opts.Extensions, true)
	if err != nil {
		return nil, err
	}
	if err := tree.ValidateLeafNode(leaf, treekem.SourceKeyPackage, 0, vopts); err != nil {
		return nil, &ValidationError{Section: "11", Err: err}
	}
	me, err := tree.AddLeaf(leaf)
	if err != nil {
		return nil, err
	}
	ctx := GroupContext{
		Version:                 keyschedule.MLS10,
		CipherSuite:             cs,
		GroupID:                 groupID,
		Epoch:                   0,
		TreeHash:                tree.TreeHash(),
		ConfirmedTranscriptHash: []byte{},
		Extensions:              opts.Extensions,
	}
	init, err := keyschedule.GenerateInitSecret(cs)
	if err != nil {
		return nil, err
	}
	ctxBytes := ctx.Bytes()
	joiner := init.JoinerSecret(nil, ctxBytes)
	init.Erase()
	es := joiner.EpochSecret(nil, ctxBytes)
	joiner.Erase()
	secrets := es.Derive()
	es.Erase()
	tag := secrets.ConfirmationTag(ctx.ConfirmedTranscriptHash)
	interim := keyschedule.InterimTranscriptHash(cs, ctx.ConfirmedTranscriptHash, tag)
	g.state, err = g.newEpochState(ctx, tree, treekem.NewPrivateKeys(cs, me, encKey), secrets, interim)
	if err != nil {
		return nil, err
	}
	return g, nil
}
