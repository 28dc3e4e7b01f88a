package mls

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

// Skip functions read past a structure without decoding or allocating, as
// its unmarshal method would accept it. Decoders use them to count a
// vector's elements before allocating its slice (see wire.CountVector), so
// that a vector costs memory in proportion to what the input holds.

func skipExtensions(s *cryptobyte.String) bool {
	var body cryptobyte.String
	if !wire.ReadVarintPrefixed(s, &body) {
		return false
	}
	_, ok := wire.CountElements(body, func(s *cryptobyte.String) bool { return s.Skip(2) && wire.SkipVarintBytes(s) })
	return ok
}

func skipKeyPackage(s *cryptobyte.String) bool {
	return s.Skip(4) && wire.SkipVarintBytes(s) && treekem.SkipLeafNode(s) &&
		skipExtensions(s) && wire.SkipVarintBytes(s)
}

func skipPSKID(s *cryptobyte.String) bool {
	var t uint8
	if !s.ReadUint8(&t) {
		return false
	}
	switch keyschedule.PSKType(t) {
	case keyschedule.PSKTypeExternal:
		if !wire.SkipVarintBytes(s) {
			return false
		}
	case keyschedule.PSKTypeResumption:
		if !s.Skip(1) || !wire.SkipVarintBytes(s) || !s.Skip(8) {
			return false
		}
	default:
		return false
	}
	return wire.SkipVarintBytes(s)
}

func skipProposal(s *cryptobyte.String) bool {
	var t uint16
	if !s.ReadUint16(&t) {
		return false
	}
	switch ProposalType(t) {
	case ProposalTypeAdd:
		return skipKeyPackage(s)
	case ProposalTypeUpdate:
		return treekem.SkipLeafNode(s)
	case ProposalTypeRemove:
		return s.Skip(4)
	case ProposalTypePreSharedKey:
		return skipPSKID(s)
	case ProposalTypeReInit:
		return wire.SkipVarintBytes(s) && s.Skip(4) && skipExtensions(s)
	case ProposalTypeExternalInit:
		return wire.SkipVarintBytes(s)
	case ProposalTypeGroupContextExtensions:
		return skipExtensions(s)
	case 0:
		return false
	default:
		return wire.SkipVarintBytes(s)
	}
}

// minRefSize is the shortest reference accepted: a ProposalRef is the
// output of RefHash (RFC 9420, §5.2), KDF.Nh bytes, and no cipher suite has
// a hash shorter than SHA-256's 32 bytes. Rejecting shorter ones keeps a
// list of references to about twice its size in memory.
const minRefSize = 32

// readProposalRef reads a proposal reference without copying (see
// wire.ReadVarintSlice).
func readProposalRef(s *cryptobyte.String, ref *ProposalRef) bool {
	return wire.ReadVarintSlice(s, (*[]byte)(ref)) && len(*ref) >= minRefSize
}

// skipProposalOrRef reads past a ProposalOrRef, counting the proposals by
// value in *byValue.
func skipProposalOrRef(s *cryptobyte.String, byValue *int) bool {
	var t uint8
	if !s.ReadUint8(&t) {
		return false
	}
	switch ProposalOrRefType(t) {
	case ProposalOrRefProposal:
		*byValue++
		return skipProposal(s)
	case ProposalOrRefReference:
		var ref ProposalRef
		return readProposalRef(s, &ref)
	}
	return false
}

// unmarshalProposals reads a commit's `ProposalOrRef proposals<V>`: it
// counts the entries first, then allocates the slice and the proposals
// sent by value once each, and keeps the references in one copy of the
// vector's bytes.
func unmarshalProposals(s *cryptobyte.String, out *[]ProposalOrRef) bool {
	byValue := 0
	_, ok := wire.CountVector(*s, func(s *cryptobyte.String) bool { return skipProposalOrRef(s, &byValue) })
	if !ok {
		return false
	}
	var slab []Proposal
	if byValue > 0 {
		slab = make([]Proposal, byValue)
	}
	return wire.ReadSharedList(s, out, func(s *cryptobyte.String) bool {
		var ignored int
		return skipProposalOrRef(s, &ignored)
	}, func(s *cryptobyte.String, p *ProposalOrRef) bool {
		if !s.ReadUint8((*uint8)(&p.Type)) {
			return false
		}
		switch p.Type {
		case ProposalOrRefProposal:
			if len(slab) == 0 {
				return false
			}
			p.Proposal, slab = &slab[0], slab[1:]
			return p.Proposal.unmarshal(s)
		case ProposalOrRefReference:
			return readProposalRef(s, &p.Reference)
		}
		return false
	})
}
