package mls

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// KeyPackage is a member's signed offer to be added to groups (RFC 9420,
// §10): the HPKE init key a Welcome is encrypted to and the leaf node it
// will occupy.
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  []Extension
	Signature   []byte
}

func (kp *KeyPackage) marshalTBS(b *cryptobyte.Builder) {
	b.AddUint16(uint16(kp.Version))
	b.AddUint16(uint16(kp.CipherSuite))
	wire.AddVarintBytes(b, kp.InitKey)
	kp.LeafNode.Marshal(b)
	treekem.MarshalExtensions(b, kp.Extensions)
}

func (kp *KeyPackage) marshal(b *cryptobyte.Builder) {
	kp.marshalTBS(b)
	wire.AddVarintBytes(b, kp.Signature)
}

func (kp *KeyPackage) unmarshal(s *cryptobyte.String) bool {
	*kp = KeyPackage{}
	return s.ReadUint16((*uint16)(&kp.Version)) &&
		s.ReadUint16((*uint16)(&kp.CipherSuite)) &&
		wire.ReadVarintBytes(s, &kp.InitKey) &&
		kp.LeafNode.Unmarshal(s) &&
		treekem.UnmarshalExtensions(s, &kp.Extensions) &&
		wire.ReadVarintBytes(s, &kp.Signature)
}

// Bytes returns the encoding of kp (without the MLSMessage envelope).
func (kp *KeyPackage) Bytes() ([]byte, error) { return wire.Marshal(kp.marshal) }

// ParseKeyPackage decodes a KeyPackage (without the MLSMessage envelope).
// It checks only the encoding; see [KeyPackage.Verify].
func ParseKeyPackage(data []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := wire.Parse(data, kp.unmarshal); err != nil {
		return nil, malformed("key package", err)
	}
	return kp, nil
}

// KeyPackageRef identifies a KeyPackage (RFC 9420, §5.2).
type KeyPackageRef []byte

// Ref returns RefHash("MLS 1.0 KeyPackage Reference", KeyPackage).
func (kp *KeyPackage) Ref() (KeyPackageRef, error) {
	if !kp.CipherSuite.Supported() {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, kp.CipherSuite)
	}
	enc, err := kp.Bytes()
	if err != nil {
		return nil, err
	}
	return kp.CipherSuite.RefHash("MLS 1.0 KeyPackage Reference", enc), nil
}

const keyPackageLabel = "KeyPackageTBS"

// sign sets kp.Signature with priv.
func (kp *KeyPackage) sign(priv *hpke.SignaturePrivateKey) error {
	tbs, err := wire.Marshal(kp.marshalTBS)
	if err != nil {
		return err
	}
	sig, err := kp.CipherSuite.SignWithLabel(priv, keyPackageLabel, tbs)
	if err != nil {
		return err
	}
	kp.Signature = sig
	return nil
}

// verifySignature checks kp's signature with the leaf's signature key.
func (kp *KeyPackage) verifySignature() error {
	tbs, err := wire.Marshal(kp.marshalTBS)
	if err != nil {
		return err
	}
	if err := kp.CipherSuite.VerifyWithLabel(kp.LeafNode.SignatureKey, keyPackageLabel, tbs, kp.Signature); err != nil {
		return fmt.Errorf("%w: key package signature", ErrInvalidSignature)
	}
	return nil
}

// verifyBasic runs the checks of RFC 9420, §10.1 that do not depend on a
// group: version, supported suite, signature, the leaf node's own signature
// and source, distinct init and encryption keys, no repeated extension
// type, and every extension of the KeyPackage and of its leaf node listed
// in the leaf's capabilities (§10). The leaf's lifetime, the listing of the
// group's version and suite (see verifyKeyPackage), and the leaf's
// credential are checked with the group's context.
func (kp *KeyPackage) verifyBasic() error {
	if kp.Version != MLS10 {
		return fmt.Errorf("%w: key package version %d", ErrUnsupported, kp.Version)
	}
	if !kp.CipherSuite.Supported() {
		return fmt.Errorf("%w: key package cipher suite %v", ErrUnsupported, kp.CipherSuite)
	}
	if kp.LeafNode.Source != treekem.SourceKeyPackage {
		return &ValidationError{Section: "10.1", Err: fmt.Errorf("key package leaf node source is %v", kp.LeafNode.Source)}
	}
	if err := kp.CipherSuite.ValidatePublicKey(kp.InitKey); err != nil {
		return &ValidationError{Section: "10.1", Err: fmt.Errorf("init key: %w", err)}
	}
	if bytes.Equal(kp.InitKey, kp.LeafNode.EncryptionKey) {
		return &ValidationError{Section: "10.1", Err: fmt.Errorf("init key equals leaf encryption key")}
	}
	if treekem.DuplicateExtension(kp.Extensions) {
		return &ValidationError{Section: "13.4", Err: fmt.Errorf("duplicate key package extension")}
	}
	// The client lists every extension it uses, in the KeyPackage and in
	// its leaf node (§7.2, §10). GREASE values count as any other (§13.5).
	caps := &kp.LeafNode.Capabilities
	if t, missing := caps.UnsupportedExtension(treekem.ExtensionTypes(kp.Extensions)); missing {
		return &ValidationError{Section: "10", Err: fmt.Errorf("%w: key package extension %d is not listed in its capabilities", treekem.ErrCapabilities, t)}
	}
	if t, missing := caps.UnsupportedExtension(treekem.ExtensionTypes(kp.LeafNode.Extensions)); missing {
		return &ValidationError{Section: "10", Err: fmt.Errorf("%w: leaf node extension %d is not listed in its capabilities", treekem.ErrCapabilities, t)}
	}
	if err := kp.CipherSuite.ValidateSignaturePublicKey(kp.LeafNode.SignatureKey); err != nil {
		return malformed("key package leaf node signature_key", err)
	}
	if err := kp.verifySignature(); err != nil {
		return err
	}
	if err := kp.LeafNode.VerifySignature(kp.CipherSuite, nil, 0); err != nil {
		return fmt.Errorf("%w: key package leaf node: %w", ErrInvalidSignature, err)
	}
	return nil
}

// verifyKeyPackage runs verifyBasic and the checks that need the group:
// the leaf's capabilities list the KeyPackage's (the group's) version and
// cipher suite, its total lifetime is within [Config.MaxLeafLifetime]
// (RFC 9420, §7.2), and the current time is within the lifetime, which a
// sender must check and a receiver is recommended to (§7.3). The rest of
// §7.3 is checked when the leaf enters the tree (applyProposals).
func (g *Group) verifyKeyPackage(kp *KeyPackage) error {
	if err := kp.verifyBasic(); err != nil {
		return err
	}
	// The client supports the version and cipher suite it offers, which
	// are the group's (§10, §11.1): its capabilities must list them, as
	// a client lists all it supports (§7.2). This is stricter than the
	// steps of §10.1; see validateOptions.
	caps := &kp.LeafNode.Capabilities
	if !slices.Contains(caps.Versions, kp.Version) || !slices.Contains(caps.CipherSuites, kp.CipherSuite) {
		return &ValidationError{Section: "10", Err: fmt.Errorf("%w: key package capabilities do not list its version and cipher suite", treekem.ErrCapabilities)}
	}
	lt := kp.LeafNode.Lifetime
	if lt.NotAfter < lt.NotBefore {
		return &ValidationError{Section: "7.3", Err: fmt.Errorf("%w: not_after precedes not_before", treekem.ErrLifetime)}
	}
	if m := g.cfg.maxLeafLifetime(); m > 0 && lt.NotAfter-lt.NotBefore > uint64(m/time.Second) {
		return &ValidationError{Section: "7.2", Err: fmt.Errorf("%w: total lifetime of %d s exceeds the maximum of %v", treekem.ErrLifetime, lt.NotAfter-lt.NotBefore, m)}
	}
	if !lt.Contains(g.cfg.now()) {
		return &ValidationError{Section: "7.3", Err: fmt.Errorf("%w: the current time is outside the key package's lifetime", treekem.ErrLifetime)}
	}
	return nil
}
