package mls

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/errs"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Types shared with the lower layers, so that callers of mls can name them
// without importing treekem or keyschedule.
type (
	// LeafIndex is the index of a member's leaf in the ratchet tree.
	LeafIndex = treekem.LeafIndex
	// LeafNode is the public content of a member's leaf (RFC 9420, §7.2).
	LeafNode = treekem.LeafNode
	// Credential is a member credential (RFC 9420, §5.3).
	Credential = treekem.Credential
	// CredentialType identifies a credential format.
	CredentialType = treekem.CredentialType
	// Capabilities lists what a client supports (RFC 9420, §7.2).
	Capabilities = treekem.Capabilities
	// Lifetime is the validity period of a KeyPackage's leaf node.
	Lifetime = treekem.Lifetime
	// Extension is an MLS extension (RFC 9420, §13.4).
	Extension = treekem.Extension
	// ExtensionType identifies an extension.
	ExtensionType = treekem.ExtensionType
	// ProposalType identifies a proposal type (RFC 9420, §12.1).
	ProposalType = treekem.ProposalType
	// UpdatePath is a committer's new leaf and path keys (RFC 9420, §7.6).
	UpdatePath = treekem.UpdatePath
	// HPKECiphertext is an HPKE encapsulation and ciphertext.
	HPKECiphertext = treekem.HPKECiphertext
	// ProtocolVersion is an MLS protocol version.
	ProtocolVersion = treekem.ProtocolVersion
	// PreSharedKeyID names a pre-shared key (RFC 9420, §8.4).
	PreSharedKeyID = keyschedule.PreSharedKeyID
	// GroupContext summarizes a group's state in an epoch (RFC 9420, §8.1).
	GroupContext = keyschedule.GroupContext
	// SignaturePrivateKey is a member's signature key (RFC 9420, §5.1.2).
	SignaturePrivateKey = hpke.SignaturePrivateKey
	// HPKEPrivateKey is an HPKE private key (init and encryption keys).
	HPKEPrivateKey = hpke.PrivateKey
)

// MLS10 is the protocol version of RFC 9420.
const MLS10 = treekem.MLS10

// Credential types of RFC 9420, §17.5.
const (
	CredentialBasic = treekem.CredentialBasic
	CredentialX509  = treekem.CredentialX509
)

// Extension types of RFC 9420, §17.3.
const (
	ExtensionApplicationID        = treekem.ExtensionApplicationID
	ExtensionRatchetTree          = treekem.ExtensionRatchetTree
	ExtensionRequiredCapabilities = treekem.ExtensionRequiredCapabilities
	ExtensionExternalPub          = treekem.ExtensionExternalPub
	ExtensionExternalSenders      = treekem.ExtensionExternalSenders
)

// ErrMalformed is matched by every error that reports bytes which do not
// decode as the expected MLS structure.
var ErrMalformed = errs.Malformed("mls: malformed message")

func malformed(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
}

// WireFormat says which kind of message an [MLSMessage] carries (RFC 9420,
// §6).
type WireFormat uint16

// Wire formats of RFC 9420, §17.2.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

// ContentType is the kind of content a framed message carries (RFC 9420,
// §6).
type ContentType uint8

// Content types of RFC 9420, §6.
const (
	ContentTypeApplication ContentType = 1
	ContentTypeProposal    ContentType = 2
	ContentTypeCommit      ContentType = 3
)

// SenderType says who sent a framed message (RFC 9420, §6).
type SenderType uint8

// Sender types of RFC 9420, §6.
const (
	SenderTypeMember            SenderType = 1
	SenderTypeExternal          SenderType = 2
	SenderTypeNewMemberProposal SenderType = 3
	SenderTypeNewMemberCommit   SenderType = 4
)

// Sender identifies the sender of a framed message (RFC 9420, §6). Index is
// the leaf index for a member and the index into the external_senders
// extension for an external sender; it is unused otherwise.
type Sender struct {
	Type  SenderType
	Index uint32
}

func (s *Sender) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(s.Type))
	switch s.Type {
	case SenderTypeMember, SenderTypeExternal:
		b.AddUint32(s.Index)
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
	default:
		b.SetError(fmt.Errorf("mls: invalid sender type %d", s.Type))
	}
}

func (s *Sender) unmarshal(str *cryptobyte.String) bool {
	*s = Sender{}
	if !str.ReadUint8((*uint8)(&s.Type)) {
		return false
	}
	switch s.Type {
	case SenderTypeMember, SenderTypeExternal:
		return str.ReadUint32(&s.Index)
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
		return true
	}
	return false
}

// FramedContent is the content of a handshake or application message with
// its framing (RFC 9420, §6). Exactly one of ApplicationData, Proposal and
// Commit is used, chosen by ContentType.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte
	Proposal          *Proposal
	Commit            *Commit
}

func (c *FramedContent) marshal(b *cryptobyte.Builder) {
	wire.AddVarintBytes(b, c.GroupID)
	b.AddUint64(c.Epoch)
	c.Sender.marshal(b)
	wire.AddVarintBytes(b, c.AuthenticatedData)
	b.AddUint8(uint8(c.ContentType))
	c.marshalBody(b)
}

// marshalBody adds the content-type-dependent body, which is shared by
// FramedContent and PrivateMessageContent.
func (c *FramedContent) marshalBody(b *cryptobyte.Builder) {
	switch c.ContentType {
	case ContentTypeApplication:
		wire.AddVarintBytes(b, c.ApplicationData)
	case ContentTypeProposal:
		if c.Proposal == nil {
			b.SetError(errors.New("mls: proposal content without a proposal"))
			return
		}
		c.Proposal.marshal(b)
	case ContentTypeCommit:
		if c.Commit == nil {
			b.SetError(errors.New("mls: commit content without a commit"))
			return
		}
		c.Commit.marshal(b)
	default:
		b.SetError(fmt.Errorf("mls: invalid content type %d", c.ContentType))
	}
}

func (c *FramedContent) unmarshal(s *cryptobyte.String) bool {
	*c = FramedContent{}
	return wire.ReadVarintBytes(s, &c.GroupID) &&
		s.ReadUint64(&c.Epoch) &&
		c.Sender.unmarshal(s) &&
		wire.ReadVarintBytes(s, &c.AuthenticatedData) &&
		s.ReadUint8((*uint8)(&c.ContentType)) &&
		c.unmarshalBody(s)
}

func (c *FramedContent) unmarshalBody(s *cryptobyte.String) bool {
	switch c.ContentType {
	case ContentTypeApplication:
		return wire.ReadVarintBytes(s, &c.ApplicationData)
	case ContentTypeProposal:
		c.Proposal = new(Proposal)
		return c.Proposal.unmarshal(s)
	case ContentTypeCommit:
		c.Commit = new(Commit)
		return c.Commit.unmarshal(s)
	}
	return false
}

// FramedContentAuthData authenticates a [FramedContent]: its signature and,
// for a commit, the confirmation tag (RFC 9420, §6.1).
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte
}

func (a *FramedContentAuthData) marshal(b *cryptobyte.Builder, ct ContentType) {
	wire.AddVarintBytes(b, a.Signature)
	if ct == ContentTypeCommit {
		wire.AddVarintBytes(b, a.ConfirmationTag)
	}
}

func (a *FramedContentAuthData) unmarshal(s *cryptobyte.String, ct ContentType) bool {
	*a = FramedContentAuthData{}
	if !wire.ReadVarintBytes(s, &a.Signature) {
		return false
	}
	if ct == ContentTypeCommit {
		return wire.ReadVarintBytes(s, &a.ConfirmationTag)
	}
	return true
}

// AuthenticatedContent is a [FramedContent] with its authentication data
// and the wire format it travels in (RFC 9420, §6.1). It is what both the
// sender and the receivers of a message agree on once framing is removed.
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

func (a *AuthenticatedContent) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(a.WireFormat))
	a.Content.marshal(b)
	a.Auth.marshal(b, a.Content.ContentType)
}

func (a *AuthenticatedContent) unmarshal(s *cryptobyte.String) bool {
	*a = AuthenticatedContent{}
	return s.ReadUint16((*uint16)(&a.WireFormat)) &&
		a.Content.unmarshal(s) &&
		a.Auth.unmarshal(s, a.Content.ContentType)
}

// Bytes returns the encoding of a.
func (a *AuthenticatedContent) Bytes() ([]byte, error) { return wire.Marshal(a.marshal) }

// ParseAuthenticatedContent decodes an AuthenticatedContent.
func ParseAuthenticatedContent(data []byte) (*AuthenticatedContent, error) {
	a := new(AuthenticatedContent)
	if err := wire.Parse(data, a.unmarshal); err != nil {
		return nil, malformed("authenticated content", err)
	}
	return a, nil
}

// confirmedTranscriptHashInput returns wire_format || content || signature
// (RFC 9420, §8.2).
func (a *AuthenticatedContent) confirmedTranscriptHashInput() ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(a.WireFormat))
		a.Content.marshal(b)
		wire.AddVarintBytes(b, a.Auth.Signature)
	})
}

// PublicMessage is a signed, unencrypted handshake or application message
// (RFC 9420, §6.2). MembershipTag is present only for member senders.
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte
}

func (m *PublicMessage) marshal(b *cryptobyte.Builder) {
	m.Content.marshal(b)
	m.Auth.marshal(b, m.Content.ContentType)
	if m.Content.Sender.Type == SenderTypeMember {
		wire.AddVarintBytes(b, m.MembershipTag)
	}
}

func (m *PublicMessage) unmarshal(s *cryptobyte.String) bool {
	*m = PublicMessage{}
	if !m.Content.unmarshal(s) || !m.Auth.unmarshal(s, m.Content.ContentType) {
		return false
	}
	if m.Content.Sender.Type == SenderTypeMember {
		return wire.ReadVarintBytes(s, &m.MembershipTag)
	}
	return true
}

// PrivateMessage is an encrypted handshake or application message (RFC
// 9420, §6.3). Only group members can learn its sender or its content.
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (m *PrivateMessage) marshal(b *cryptobyte.Builder) {
	wire.AddVarintBytes(b, m.GroupID)
	b.AddUint64(m.Epoch)
	b.AddUint8(uint8(m.ContentType))
	wire.AddVarintBytes(b, m.AuthenticatedData)
	wire.AddVarintBytes(b, m.EncryptedSenderData)
	wire.AddVarintBytes(b, m.Ciphertext)
}

func (m *PrivateMessage) unmarshal(s *cryptobyte.String) bool {
	*m = PrivateMessage{}
	return wire.ReadVarintBytes(s, &m.GroupID) &&
		s.ReadUint64(&m.Epoch) &&
		s.ReadUint8((*uint8)(&m.ContentType)) &&
		m.ContentType >= ContentTypeApplication && m.ContentType <= ContentTypeCommit &&
		wire.ReadVarintBytes(s, &m.AuthenticatedData) &&
		wire.ReadVarintBytes(s, &m.EncryptedSenderData) &&
		wire.ReadVarintBytes(s, &m.Ciphertext)
}

// MLSMessage is the envelope of every MLS message on the wire (RFC 9420,
// §6). Exactly one of the pointer fields is set, chosen by WireFormat.
type MLSMessage struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

func (m *MLSMessage) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(m.Version))
	b.AddUint16(uint16(m.WireFormat))
	switch {
	case m.WireFormat == WireFormatPublicMessage && m.PublicMessage != nil:
		m.PublicMessage.marshal(b)
	case m.WireFormat == WireFormatPrivateMessage && m.PrivateMessage != nil:
		m.PrivateMessage.marshal(b)
	case m.WireFormat == WireFormatWelcome && m.Welcome != nil:
		m.Welcome.marshal(b)
	case m.WireFormat == WireFormatGroupInfo && m.GroupInfo != nil:
		m.GroupInfo.marshal(b)
	case m.WireFormat == WireFormatKeyPackage && m.KeyPackage != nil:
		m.KeyPackage.marshal(b)
	default:
		b.SetError(fmt.Errorf("mls: message with wire format %d has no matching body", m.WireFormat))
	}
}

func (m *MLSMessage) unmarshal(s *cryptobyte.String) bool {
	*m = MLSMessage{}
	if !s.ReadUint16((*uint16)(&m.Version)) || m.Version != MLS10 || !s.ReadUint16((*uint16)(&m.WireFormat)) {
		return false
	}
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		return m.PublicMessage.unmarshal(s)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		return m.PrivateMessage.unmarshal(s)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		return m.Welcome.unmarshal(s)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		return m.GroupInfo.unmarshal(s)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		return m.KeyPackage.unmarshal(s)
	}
	return false
}

// ParseMessage decodes an MLSMessage. It rejects versions other than
// mls10, unknown wire formats and trailing data; errors match
// [ErrMalformed].
func ParseMessage(data []byte) (*MLSMessage, error) {
	m := new(MLSMessage)
	if err := wire.Parse(data, m.unmarshal); err != nil {
		return nil, malformed("MLSMessage", err)
	}
	return m, nil
}

// Bytes returns the wire encoding of m.
func (m *MLSMessage) Bytes() ([]byte, error) { return wire.Marshal(m.marshal) }

// GroupID returns the group ID a PublicMessage or PrivateMessage is
// addressed to, or nil for other wire formats. The delivery service may use
// it for routing.
func (m *MLSMessage) GroupID() []byte {
	switch {
	case m.PublicMessage != nil:
		return m.PublicMessage.Content.GroupID
	case m.PrivateMessage != nil:
		return m.PrivateMessage.GroupID
	}
	return nil
}

// Epoch returns the epoch a PublicMessage or PrivateMessage belongs to.
func (m *MLSMessage) Epoch() uint64 {
	switch {
	case m.PublicMessage != nil:
		return m.PublicMessage.Content.Epoch
	case m.PrivateMessage != nil:
		return m.PrivateMessage.Epoch
	}
	return 0
}
