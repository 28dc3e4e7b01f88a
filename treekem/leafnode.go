package treekem

import (
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/ext"
	"github.com/microchat/e2ee/internal/wire"
)

// ProtocolVersion is an MLS protocol version (RFC 9420, Section 6). It is
// the same type as keyschedule.ProtocolVersion and mls.ProtocolVersion.
type ProtocolVersion = ext.ProtocolVersion

// MLS10 is the protocol version of RFC 9420.
const MLS10 = ext.MLS10

// ExtensionType identifies an extension (RFC 9420, Section 17.3).
type ExtensionType = ext.ExtensionType

// Extension types defined by RFC 9420, Section 17.3. They are the
// "default" extension types of Section 7.2, which every client implements
// and which are never listed in [Capabilities].
const (
	ExtensionApplicationID        ExtensionType = 0x0001
	ExtensionRatchetTree          ExtensionType = 0x0002
	ExtensionRequiredCapabilities ExtensionType = 0x0003
	ExtensionExternalPub          ExtensionType = 0x0004
	ExtensionExternalSenders      ExtensionType = 0x0005
)

// ProposalType identifies a proposal (RFC 9420, Section 17.4).
type ProposalType uint16

// IsDefault reports whether t is one of the default proposal types of RFC
// 9420, Section 7.2 (add through group_context_extensions), which are
// implicitly supported by every client.
func (t ProposalType) IsDefault() bool { return t >= 1 && t <= 7 }

// CredentialType identifies a credential format (RFC 9420, Section 17.5).
type CredentialType uint16

// Credential types defined by RFC 9420, Section 17.5.
const (
	CredentialBasic CredentialType = 0x0001
	CredentialX509  CredentialType = 0x0002
)

// LeafNodeSource says how a leaf node came to be in the tree (RFC 9420,
// Section 7.2).
type LeafNodeSource uint8

// Leaf node sources of RFC 9420, Section 7.2.
const (
	SourceKeyPackage LeafNodeSource = 1
	SourceUpdate     LeafNodeSource = 2
	SourceCommit     LeafNodeSource = 3
)

// String returns the RFC name of the source.
func (s LeafNodeSource) String() string {
	switch s {
	case SourceKeyPackage:
		return "key_package"
	case SourceUpdate:
		return "update"
	case SourceCommit:
		return "commit"
	}
	return fmt.Sprintf("LeafNodeSource(%d)", uint8(s))
}

// Extension is an MLS extension: a type and opaque data (RFC 9420, Section
// 7.2). It is the same type as keyschedule.Extension and mls.Extension.
type Extension = ext.Extension

// MarshalExtensions adds an `Extension extensions<V>` vector to b.
func MarshalExtensions(b *cryptobyte.Builder, exts []Extension) { ext.MarshalExtensions(b, exts) }

// UnmarshalExtensions reads an `Extension extensions<V>` vector from s. An
// empty vector is stored as nil. It does not reject repeated types; see
// [DuplicateExtension].
func UnmarshalExtensions(s *cryptobyte.String, out *[]Extension) bool {
	return ext.UnmarshalExtensions(s, out)
}

// DuplicateExtension reports whether exts lists some extension type more
// than once, which RFC 9420, Section 13.4 forbids.
func DuplicateExtension(exts []Extension) bool { return ext.DuplicateExtension(exts) }

// Credential is a member credential (RFC 9420, Section 5.3). Exactly one
// of the variant fields is meaningful, chosen by Type: Identity for basic
// credentials, Certificates (DER, end-entity first) for X.509 ones, and
// Data for every other type.
//
// RFC 9420 fixes no encoding for credential types it does not define. This
// package reads and writes the body of any other type as a single
// `opaque data<V>`, the convention of the existing implementations, so
// such credentials round-trip byte for byte.
type Credential struct {
	Type         CredentialType
	Identity     []byte
	Certificates [][]byte
	Data         []byte
}

// Marshal adds the wire encoding of c to b.
func (c *Credential) Marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(c.Type))
	switch c.Type {
	case CredentialBasic:
		wire.AddVarintBytes(b, c.Identity)
	case CredentialX509:
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for _, cert := range c.Certificates {
				wire.AddVarintBytes(b, cert)
			}
		})
	default:
		wire.AddVarintBytes(b, c.Data)
	}
}

// Unmarshal reads a credential from s.
func (c *Credential) Unmarshal(s *cryptobyte.String) bool {
	return c.unmarshal(s, copying)
}

func (c *Credential) unmarshal(s *cryptobyte.String, r *byteReaders) bool {
	*c = Credential{}
	if !s.ReadUint16((*uint16)(&c.Type)) {
		return false
	}
	switch c.Type {
	case CredentialBasic:
		return r.bytes(s, &c.Identity)
	case CredentialX509:
		// The certificates share one copy of the chain's bytes. A
		// certificate shorter than a DER tag and length is rejected.
		if r.inPlace {
			return wire.ReadList(s, &c.Certificates, skipCertificate, readCertificate)
		}
		return wire.ReadSharedList(s, &c.Certificates, skipCertificate, readCertificate)
	default:
		return r.bytes(s, &c.Data)
	}
}

func readCertificate(s *cryptobyte.String, cert *[]byte) bool {
	return wire.ReadVarintSlice(s, cert) && len(*cert) >= 2
}

func skipCertificate(s *cryptobyte.String) bool {
	var cert []byte
	return readCertificate(s, &cert)
}

// identityKey returns the key under which the tree indexes c: its type
// followed by the basic identity, the end-entity certificate, or the raw
// data of other types.
func (c *Credential) identityKey() string {
	var id []byte
	switch c.Type {
	case CredentialBasic:
		id = c.Identity
	case CredentialX509:
		if len(c.Certificates) > 0 {
			id = c.Certificates[0]
		}
	default:
		id = c.Data
	}
	return string([]byte{byte(c.Type >> 8), byte(c.Type)}) + string(id)
}

// Capabilities lists what a client supports (RFC 9420, Section 7.2).
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []hpke.CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

func addUint16s[T ~uint16](b *cryptobyte.Builder, v []T) {
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for _, x := range v {
			b.AddUint16(uint16(x))
		}
	})
}

func readUint16s[T ~uint16](s *cryptobyte.String, out *[]T) bool {
	var body cryptobyte.String
	if !wire.ReadVarintPrefixed(s, &body) || len(body)%2 != 0 {
		return false
	}
	var v []T
	if len(body) > 0 {
		v = make([]T, 0, len(body)/2)
	}
	for !body.Empty() {
		var x uint16
		body.ReadUint16(&x)
		v = append(v, T(x))
	}
	*out = v
	return true
}

// Marshal adds the wire encoding of c to b.
func (c *Capabilities) Marshal(b *cryptobyte.Builder) {
	addUint16s(b, c.Versions)
	addUint16s(b, c.CipherSuites)
	addUint16s(b, c.Extensions)
	addUint16s(b, c.Proposals)
	addUint16s(b, c.Credentials)
}

// Unmarshal reads capabilities from s.
func (c *Capabilities) Unmarshal(s *cryptobyte.String) bool {
	*c = Capabilities{}
	return readUint16s(s, &c.Versions) &&
		readUint16s(s, &c.CipherSuites) &&
		readUint16s(s, &c.Extensions) &&
		readUint16s(s, &c.Proposals) &&
		readUint16s(s, &c.Credentials)
}

// SupportsExtension reports whether c lists t, or t is a default extension
// type.
func (c *Capabilities) SupportsExtension(t ExtensionType) bool {
	return t.IsDefault() || slices.Contains(c.Extensions, t)
}

// SupportsProposal reports whether c lists t, or t is a default proposal
// type.
func (c *Capabilities) SupportsProposal(t ProposalType) bool {
	return t.IsDefault() || slices.Contains(c.Proposals, t)
}

// SupportsCredential reports whether c lists t. There are no default
// credential types.
func (c *Capabilities) SupportsCredential(t CredentialType) bool {
	return slices.Contains(c.Credentials, t)
}

// UnsupportedExtension returns the first type of types that is neither a
// default extension type nor listed in c, and whether there is one. It
// takes time linear in the lengths of both lists, however long and
// hostile they are.
func (c *Capabilities) UnsupportedExtension(types []ExtensionType) (ExtensionType, bool) {
	return firstMissing(c.Extensions, types, ExtensionType.IsDefault)
}

// UnsupportedProposal is [Capabilities.UnsupportedExtension] for proposal
// types.
func (c *Capabilities) UnsupportedProposal(types []ProposalType) (ProposalType, bool) {
	return firstMissing(c.Proposals, types, ProposalType.IsDefault)
}

// ExtensionTypes returns the types of exts, in order.
func ExtensionTypes(exts []Extension) []ExtensionType {
	if len(exts) == 0 {
		return nil
	}
	out := make([]ExtensionType, len(exts))
	for i := range exts {
		out[i] = exts[i].Type
	}
	return out
}

// shortList is the length up to which firstMissing compares every pair:
// with one list that short, comparing pairs is linear in the other.
const shortList = 8

// firstMissing returns the first element of want that is not in have and
// for which implicit (if non-nil) is false. It compares pairs when one list
// is short and otherwise marks have in a bitmap of all 2^16 values, so that
// it takes time linear in len(have)+len(want) (a leaf may list tens of
// thousands of types) and does not allocate.
func firstMissing[T ~uint16](have, want []T, implicit func(T) bool) (T, bool) {
	if len(want) == 0 {
		return 0, false
	}
	if len(have) <= shortList || len(want) <= shortList {
		for _, t := range want {
			if (implicit == nil || !implicit(t)) && !slices.Contains(have, t) {
				return t, true
			}
		}
		return 0, false
	}
	var set [1 << 16 / 64]uint64
	for _, t := range have {
		set[t/64] |= 1 << (t % 64)
	}
	for _, t := range want {
		if implicit != nil && implicit(t) {
			continue
		}
		if set[t/64]&(1<<(t%64)) == 0 {
			return t, true
		}
	}
	return 0, false
}

// RequiredCapabilities is the content of the required_capabilities
// GroupContext extension (RFC 9420, Section 11.1).
type RequiredCapabilities struct {
	Extensions  []ExtensionType
	Proposals   []ProposalType
	Credentials []CredentialType
}

// Marshal adds the wire encoding of r to b.
func (r *RequiredCapabilities) Marshal(b *cryptobyte.Builder) {
	addUint16s(b, r.Extensions)
	addUint16s(b, r.Proposals)
	addUint16s(b, r.Credentials)
}

// Unmarshal reads a RequiredCapabilities from s.
func (r *RequiredCapabilities) Unmarshal(s *cryptobyte.String) bool {
	*r = RequiredCapabilities{}
	return readUint16s(s, &r.Extensions) &&
		readUint16s(s, &r.Proposals) &&
		readUint16s(s, &r.Credentials)
}

// SatisfiedBy reports whether c supports everything r requires: every
// required extension and proposal type is a default type or listed in c,
// and every required credential type is listed in c (RFC 9420, Section
// 11.1). It takes time linear in the lengths of the lists.
func (r *RequiredCapabilities) SatisfiedBy(c *Capabilities) bool {
	if _, missing := c.UnsupportedExtension(r.Extensions); missing {
		return false
	}
	if _, missing := c.UnsupportedProposal(r.Proposals); missing {
		return false
	}
	_, missing := firstMissing(c.Credentials, r.Credentials, nil)
	return !missing
}

// Lifetime is the validity period of a leaf node from a KeyPackage, in
// seconds since the Unix epoch (RFC 9420, Section 7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// Contains reports whether t lies within the lifetime, bounds included.
func (l Lifetime) Contains(t time.Time) bool {
	u := t.Unix()
	if u < 0 {
		return false
	}
	return uint64(u) >= l.NotBefore && uint64(u) <= l.NotAfter
}

// LeafNode is the content of a leaf of the ratchet tree (RFC 9420, Section
// 7.2). Lifetime is meaningful only when Source is [SourceKeyPackage], and
// ParentHash only when Source is [SourceCommit].
//
// A LeafNode placed in a [Tree] must not be modified afterwards: trees and
// their clones share it.
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime
	ParentHash    []byte
	Extensions    []Extension
	Signature     []byte
}

// marshalContent adds the fields common to LeafNode and LeafNodeTBS.
func (l *LeafNode) marshalContent(b *cryptobyte.Builder) {
	wire.AddVarintBytes(b, l.EncryptionKey)
	wire.AddVarintBytes(b, l.SignatureKey)
	l.Credential.Marshal(b)
	l.Capabilities.Marshal(b)
	b.AddUint8(uint8(l.Source))
	switch l.Source {
	case SourceKeyPackage:
		b.AddUint64(l.Lifetime.NotBefore)
		b.AddUint64(l.Lifetime.NotAfter)
	case SourceUpdate:
	case SourceCommit:
		wire.AddVarintBytes(b, l.ParentHash)
	default:
		b.SetError(fmt.Errorf("treekem: invalid leaf node source %d", l.Source))
	}
	MarshalExtensions(b, l.Extensions)
}

// Marshal adds the wire encoding of l to b.
func (l *LeafNode) Marshal(b *cryptobyte.Builder) {
	l.marshalContent(b)
	wire.AddVarintBytes(b, l.Signature)
}

// Unmarshal reads a leaf node from s. It fails on an unknown
// leaf_node_source.
func (l *LeafNode) Unmarshal(s *cryptobyte.String) bool {
	return l.unmarshal(s, copying)
}

// byteReaders says how a decoder keeps byte strings: copied, or pointing
// into a private copy of the input (see ParseTree).
type byteReaders struct {
	bytes      func(*cryptobyte.String, *[]byte) bool
	extensions func(*cryptobyte.String, *[]Extension) bool
	inPlace    bool
}

var (
	copying = &byteReaders{wire.ReadVarintBytes, UnmarshalExtensions, false}
	inPlace = &byteReaders{wire.ReadVarintSlice, ext.UnmarshalExtensionsInPlace, true}
)

func (l *LeafNode) unmarshal(s *cryptobyte.String, r *byteReaders) bool {
	*l = LeafNode{}
	if !r.bytes(s, &l.EncryptionKey) ||
		!r.bytes(s, &l.SignatureKey) ||
		!l.Credential.unmarshal(s, r) ||
		!l.Capabilities.Unmarshal(s) ||
		!s.ReadUint8((*uint8)(&l.Source)) {
		return false
	}
	switch l.Source {
	case SourceKeyPackage:
		if !s.ReadUint64(&l.Lifetime.NotBefore) || !s.ReadUint64(&l.Lifetime.NotAfter) {
			return false
		}
	case SourceUpdate:
	case SourceCommit:
		if !r.bytes(s, &l.ParentHash) {
			return false
		}
	default:
		return false
	}
	return r.extensions(s, &l.Extensions) && r.bytes(s, &l.Signature)
}

// ParseLeafNode decodes a whole LeafNode from data.
func ParseLeafNode(data []byte) (*LeafNode, error) {
	l := new(LeafNode)
	if err := wire.Parse(data, l.Unmarshal); err != nil {
		return nil, fmt.Errorf("%w: leaf node: %w", ErrMalformed, err)
	}
	return l, nil
}

// Bytes returns the wire encoding of l. It panics only if a field is longer
// than the 2^30-1 bytes the encoding can express or Source is not one of
// the three RFC values, which a LeafNode from [ParseLeafNode] never is.
func (l *LeafNode) Bytes() []byte {
	return wire.MustMarshal(l.Marshal)
}

// tbs returns the LeafNodeTBS of RFC 9420, Section 7.2: the content, then
// the group ID and leaf index for the update and commit sources.
func (l *LeafNode) tbs(groupID []byte, leaf LeafIndex) ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) { l.marshalTBS(b, groupID, leaf) })
}

func (l *LeafNode) marshalTBS(b *cryptobyte.Builder, groupID []byte, leaf LeafIndex) {
	l.marshalContent(b)
	if l.Source == SourceUpdate || l.Source == SourceCommit {
		wire.AddVarintBytes(b, groupID)
		b.AddUint32(uint32(leaf))
	}
}

const leafNodeLabel = "LeafNodeTBS"

// Sign sets l.Signature to SignWithLabel(priv, "LeafNodeTBS", LeafNodeTBS)
// (RFC 9420, Section 7.2). groupID and leaf are signed only for the update
// and commit sources; they are ignored for key_package.
func (l *LeafNode) Sign(cs hpke.CipherSuite, priv *hpke.SignaturePrivateKey, groupID []byte, leaf LeafIndex) error {
	tbs, err := l.tbs(groupID, leaf)
	if err != nil {
		return fmt.Errorf("treekem: signing leaf node: %w", err)
	}
	sig, err := cs.SignWithLabel(priv, leafNodeLabel, tbs)
	if err != nil {
		return fmt.Errorf("treekem: signing leaf node: %w", err)
	}
	l.Signature = sig
	return nil
}

// VerifySignature checks l.Signature with l.SignatureKey (RFC 9420,
// Section 7.2). groupID and leaf matter only for the update and commit
// sources. Failure matches [ErrInvalidSignature], or [ErrMalformed] if the
// signature key does not decode.
func (l *LeafNode) VerifySignature(cs hpke.CipherSuite, groupID []byte, leaf LeafIndex) error {
	// A key that does not decode (a compressed ECDSA point, a key of the
	// wrong length) is malformed input, not a failed signature: say so.
	if err := cs.ValidateSignaturePublicKey(l.SignatureKey); err != nil {
		return fmt.Errorf("%w: leaf node signature_key: %w", ErrMalformed, err)
	}
	// The TBS is built in a scratch buffer, verified and dropped.
	var verr error
	err := wire.Use(func(b *cryptobyte.Builder) { l.marshalTBS(b, groupID, leaf) }, func(tbs []byte) {
		verr = cs.VerifyWithLabel(l.SignatureKey, leafNodeLabel, tbs, l.Signature)
	})
	if err == nil {
		err = verr
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	return nil
}

// clone returns a shallow copy of l whose slices may be replaced (not
// modified in place) without touching l.
func (l *LeafNode) clone() *LeafNode {
	c := *l
	return &c
}
