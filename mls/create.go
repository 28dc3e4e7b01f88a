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
// [KeyPackageOptions.Lifetime] is zero.
const DefaultKeyPackageLifetime = 90 * 24 * time.Hour

// KeyPackageOptions are the optional parameters of [GenerateKeyPackage].
type KeyPackageOptions struct {
	// Now is the time the lifetime starts from; the default is time.Now.
	Now func() time.Time
	// Lifetime is how long the KeyPackage is valid. Zero selects
	// DefaultKeyPackageLifetime.
	Lifetime time.Duration
	// Capabilities overrides the advertised capabilities. The default
	// lists MLS 1.0, the KeyPackage's cipher suite, basic and X.509
	// credentials, and the extension and proposal types below.
	Capabilities *Capabilities
	// Extensions are KeyPackage extensions.
	Extensions []Extension
	// LeafExtensions are extensions of the leaf node.
	LeafExtensions []Extension
	// ExtensionTypes and ProposalTypes are non-default types the client
	// supports, added to the default capabilities.
	ExtensionTypes []ExtensionType
	ProposalTypes  []ProposalType
	// LastResort adds the last_resort extension.
	LastResort bool
	// NoGREASE turns off the GREASE values (RFC 9420, §13.5) that are
	// otherwise added to the capabilities.
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
// random bytes of data, for the extension lists where RFC 9420, §13.5 asks
// for GREASE (KeyPackage and GroupInfo extensions).
func greaseExtension() Extension {
	var n [1]byte
	rand.Read(n[:])
	data := make([]byte, n[0]%8)
	rand.Read(data)
	return Extension{Type: ExtensionType(greaseValue()), Data: data}
}

// addLeafGREASE adds to exts a GREASE extension of a GREASE type listed in
// caps (a leaf may only use extensions it lists, §7.3), unless exts
// already has one or caps lists none.
func addLeafGREASE(caps *Capabilities, exts []Extension) []Extension {
	for _, e := range exts {
		if IsGREASE(uint16(e.Type)) {
			return exts
		}
	}
	for _, t := range caps.Extensions {
		if IsGREASE(uint16(t)) {
			return append(slices.Clip(exts), Extension{Type: t, Data: []byte{}})
		}
	}
	return exts
}

// IsGREASE reports whether v is a GREASE value (RFC 9420, §13.5).
func IsGREASE(v uint16) bool { return v&0x0F0F == 0x0A0A && v>>12 == (v>>4)&0xF }

func defaultCapabilities(cs CipherSuite, opts *KeyPackageOptions) Capabilities {
	c := Capabilities{
		Versions:     []ProtocolVersion{MLS10},
		CipherSuites: []CipherSuite{cs},
		Credentials:  []CredentialType{CredentialBasic, CredentialX509},
	}
	if opts != nil {
		c.Extensions = append(c.Extensions, opts.ExtensionTypes...)
		c.Proposals = append(c.Proposals, opts.ProposalTypes...)
		if opts.LastResort {
			c.Extensions = append(c.Extensions, ExtensionLastResort)
		}
	}
	if opts == nil || !opts.NoGREASE {
		c.CipherSuites = append(c.CipherSuites, CipherSuite(greaseValue()))
		c.Extensions = append(c.Extensions, ExtensionType(greaseValue()))
		c.Proposals = append(c.Proposals, ProposalType(greaseValue()))
		c.Credentials = append(c.Credentials, CredentialType(greaseValue()))
	}
	return c
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
	caps := defaultCapabilities(cs, opts)
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	leafExts := opts.LeafExtensions
	if !opts.NoGREASE {
		leafExts = addLeafGREASE(&caps, leafExts)
	}
	leaf, encKey, err := newLeafNode(cs, cred, sig, caps, leafExts)
	if err != nil {
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
	exts := append([]Extension(nil), opts.Extensions...)
	if opts.LastResort {
		exts = append(exts, Extension{Type: ExtensionLastResort, Data: []byte{}})
	}
	if !opts.NoGREASE {
		exts = append(exts, greaseExtension())
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
	kpOpts := &KeyPackageOptions{ExtensionTypes: opts.ExtensionTypes, ProposalTypes: opts.ProposalTypes}
	caps := defaultCapabilities(cs, kpOpts)
	if opts.Capabilities != nil {
		caps = *opts.Capabilities
	}
	leaf, encKey, err := newLeafNode(cs, cred, sig, caps, addLeafGREASE(&caps, opts.LeafExtensions))
	if err != nil {
		return nil, err
	}
	now := g.cfg.now()
	leaf.Source = treekem.SourceKeyPackage
	leaf.Lifetime = Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(DefaultKeyPackageLifetime).Unix())}
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
	// The group's extensions must be supported by its creator (§11).
	for _, e := range opts.Extensions {
		if !leaf.Capabilities.SupportsExtension(e.Type) {
			return nil, fmt.Errorf("%w: creator does not support group extension %d", ErrUnsupported, e.Type)
		}
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
