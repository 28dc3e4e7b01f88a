package mls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// Proposal types of RFC 9420, §17.4.
const (
	ProposalTypeAdd                    ProposalType = 1
	ProposalTypeUpdate                 ProposalType = 2
	ProposalTypeRemove                 ProposalType = 3
	ProposalTypePreSharedKey           ProposalType = 4
	ProposalTypeReInit                 ProposalType = 5
	ProposalTypeExternalInit           ProposalType = 6
	ProposalTypeGroupContextExtensions ProposalType = 7
)

// Proposal is a proposed change to a group (RFC 9420, §12.1). Exactly one
// of the pointer fields is set, chosen by Type; a proposal of a type this
// package does not define carries its body in Custom.
type Proposal struct {
	Type                   ProposalType
	Add                    *AddProposal
	Update                 *UpdateProposal
	Remove                 *RemoveProposal
	PreSharedKey           *PreSharedKeyProposal
	ReInit                 *ReInitProposal
	ExternalInit           *ExternalInitProposal
	GroupContextExtensions *GroupContextExtensionsProposal
	// Custom is the body of a proposal type that RFC 9420 does not define.
	// RFC 9420 fixes no encoding for such proposals; this package reads
	// and writes the body as one opaque<V>, as other implementations do.
	Custom []byte
}

// AddProposal adds a member to the group (RFC 9420, §12.1.1).
type AddProposal struct {
	KeyPackage KeyPackage
}

// UpdateProposal replaces the sender's leaf node (RFC 9420, §12.1.2).
type UpdateProposal struct {
	LeafNode LeafNode
}

// RemoveProposal removes the member at leaf Removed (RFC 9420, §12.1.3).
type RemoveProposal struct {
	Removed LeafIndex
}

// PreSharedKeyProposal injects a PSK into the key schedule (RFC 9420,
// §12.1.4).
type PreSharedKeyProposal struct {
	PSK PreSharedKeyID
}

// ReInitProposal asks for the group to be re-created with new parameters
// (RFC 9420, §12.1.5).
type ReInitProposal struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  []Extension
}

// ExternalInitProposal carries the KEM output a new member uses to join by
// external commit (RFC 9420, §12.1.6).
type ExternalInitProposal struct {
	KEMOutput []byte
}

// GroupContextExtensionsProposal replaces the group's extensions (RFC
// 9420, §12.1.7).
type GroupContextExtensionsProposal struct {
	Extensions []Extension
}

func (p *Proposal) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(p.Type))
	switch p.Type {
	case ProposalTypeAdd:
		if p.Add == nil {
			break
		}
		p.Add.KeyPackage.marshal(b)
		return
	case ProposalTypeUpdate:
		if p.Update == nil {
			break
		}
		p.Update.LeafNode.Marshal(b)
		return
	case ProposalTypeRemove:
		if p.Remove == nil {
			break
		}
		b.AddUint32(uint32(p.Remove.Removed))
		return
	case ProposalTypePreSharedKey:
		if p.PreSharedKey == nil {
			break
		}
		p.PreSharedKey.PSK.Marshal(b)
		return
	case ProposalTypeReInit:
		if p.ReInit == nil {
			break
		}
		wire.AddVarintBytes(b, p.ReInit.GroupID)
		b.AddUint16(uint16(p.ReInit.Version))
		b.AddUint16(uint16(p.ReInit.CipherSuite))
		treekem.MarshalExtensions(b, p.ReInit.Extensions)
		return
	case ProposalTypeExternalInit:
		if p.ExternalInit == nil {
			break
		}
		wire.AddVarintBytes(b, p.ExternalInit.KEMOutput)
		return
	case ProposalTypeGroupContextExtensions:
		if p.GroupContextExtensions == nil {
			break
		}
		treekem.MarshalExtensions(b, p.GroupContextExtensions.Extensions)
		return
	default:
		wire.AddVarintBytes(b, p.Custom)
		return
	}
	b.SetError(fmt.Errorf("mls: proposal of type %d has no body", p.Type))
}

func (p *Proposal) unmarshal(s *cryptobyte.String) bool {
	*p = Proposal{}
	if !s.ReadUint16((*uint16)(&p.Type)) {
		return false
	}
	switch p.Type {
	case ProposalTypeAdd:
		p.Add = new(AddProposal)
		return p.Add.KeyPackage.unmarshal(s)
	case ProposalTypeUpdate:
		p.Update = new(UpdateProposal)
		return p.Update.LeafNode.Unmarshal(s)
	case ProposalTypeRemove:
		p.Remove = new(RemoveProposal)
		return s.ReadUint32((*uint32)(&p.Remove.Removed))
	case ProposalTypePreSharedKey:
		p.PreSharedKey = new(PreSharedKeyProposal)
		return p.PreSharedKey.PSK.Unmarshal(s)
	case ProposalTypeReInit:
		r := new(ReInitProposal)
		p.ReInit = r
		return wire.ReadVarintBytes(s, &r.GroupID) &&
			s.ReadUint16((*uint16)(&r.Version)) &&
			s.ReadUint16((*uint16)(&r.CipherSuite)) &&
			treekem.UnmarshalExtensions(s, &r.Extensions)
	case ProposalTypeExternalInit:
		p.ExternalInit = new(ExternalInitProposal)
		return wire.ReadVarintBytes(s, &p.ExternalInit.KEMOutput)
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensionsProposal)
		return treekem.UnmarshalExtensions(s, &p.GroupContextExtensions.Extensions)
	case 0:
		return false // reserved
	default:
		return wire.ReadVarintBytes(s, &p.Custom)
	}
}

// Bytes returns the encoding of p.
func (p *Proposal) Bytes() ([]byte, error) { return wire.Marshal(p.marshal) }

// ParseProposal decodes a Proposal.
func ParseProposal(data []byte) (*Proposal, error) {
	p := new(Proposal)
	if err := wire.Parse(data, p.unmarshal); err != nil {
		return nil, malformed("proposal", err)
	}
	return p, nil
}

// ProposalRef identifies a proposal sent earlier in the epoch (RFC 9420,
// §5.2): RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent).
type ProposalRef []byte

// ProposalOrRefType says whether a commit lists a proposal by value or by
// reference (RFC 9420, §12.4).
type ProposalOrRefType uint8

// ProposalOrRef types of RFC 9420, §12.4.
const (
	ProposalOrRefProposal  ProposalOrRefType = 1
	ProposalOrRefReference ProposalOrRefType = 2
)

// ProposalOrRef is one entry of a commit's proposal list: a proposal by
// value or a reference to one sent earlier (RFC 9420, §12.4).
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal
	Reference ProposalRef
}

func (p *ProposalOrRef) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Type))
	switch p.Type {
	case ProposalOrRefProposal:
		if p.Proposal == nil {
			b.SetError(fmt.Errorf("mls: proposal by value without a proposal"))
			return
		}
		p.Proposal.marshal(b)
	case ProposalOrRefReference:
		wire.AddVarintBytes(b, p.Reference)
	default:
		b.SetError(fmt.Errorf("mls: invalid ProposalOrRef type %d", p.Type))
	}
}

// Commit applies a list of proposals to a group and optionally refreshes the
// committer's path (RFC 9420, §12.4).
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

func (c *Commit) marshal(b *cryptobyte.Builder) {
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for i := range c.Proposals {
			c.Proposals[i].marshal(b)
		}
	})
	wire.AddOptional(b, c.Path != nil, func(b *cryptobyte.Builder) { c.Path.Marshal(b) })
}

func (c *Commit) unmarshal(s *cryptobyte.String) bool {
	*c = Commit{}
	if !unmarshalProposals(s, &c.Proposals) {
		return false
	}
	var present bool
	if !wire.ReadOptional(s, &present) {
		return false
	}
	if present {
		c.Path = new(UpdatePath)
		return c.Path.Unmarshal(s)
	}
	return true
}

// Bytes returns the encoding of c.
func (c *Commit) Bytes() ([]byte, error) { return wire.Marshal(c.marshal) }

// ParseCommit decodes a Commit.
func ParseCommit(data []byte) (*Commit, error) {
	c := new(Commit)
	if err := wire.Parse(data, c.unmarshal); err != nil {
		return nil, malformed("commit", err)
	}
	return c, nil
}
