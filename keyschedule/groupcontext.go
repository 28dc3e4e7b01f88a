package keyschedule

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/errs"
	"github.com/microchat/e2ee/internal/ext"
	"github.com/microchat/e2ee/internal/wire"
)

// ErrMalformed is returned, wrapped, by the parsers of this package when
// their input is not a valid encoding.
var ErrMalformed = errs.Malformed("keyschedule: malformed encoding")

// ProtocolVersion is an MLS protocol version (RFC 9420, Section 6). It is
// the same type as treekem.ProtocolVersion and mls.ProtocolVersion.
type ProtocolVersion = ext.ProtocolVersion

// MLS10 is the protocol version of RFC 9420, mls10.
const MLS10 = ext.MLS10

// Extension is one entry of an extension list (RFC 9420, Section 13.4). It
// is the same type as treekem.Extension and mls.Extension; this package does
// not interpret extensions, package mls does.
type Extension = ext.Extension

// GroupContext summarizes the state of a group in an epoch (RFC 9420,
// Section 8.1). Its serialization, [GroupContext.Bytes], is an input to the
// key schedule.
type GroupContext struct {
	// Version is the protocol version, [MLS10].
	Version ProtocolVersion
	// CipherSuite is the cipher suite of the group.
	CipherSuite hpke.CipherSuite
	// GroupID is the application-defined identifier of the group.
	GroupID []byte
	// Epoch is the number of the epoch, incremented by each Commit.
	Epoch uint64
	// TreeHash is the tree hash of the ratchet tree's root (RFC 9420,
	// Section 7.8).
	TreeHash []byte
	// ConfirmedTranscriptHash is the confirmed transcript hash of the
	// epoch (see [ConfirmedTranscriptHash]).
	ConfirmedTranscriptHash []byte
	// Extensions are the group's GroupContext extensions.
	Extensions []Extension
}

// Marshal appends the TLS encoding of c to b.
//
// Most users won't need Marshal: it is for packages embedding a
// GroupContext in a larger structure (GroupInfo's GroupInfoTBS).
func (c *GroupContext) Marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(c.Version))
	b.AddUint16(uint16(c.CipherSuite))
	wire.AddVarintBytes(b, c.GroupID)
	b.AddUint64(c.Epoch)
	wire.AddVarintBytes(b, c.TreeHash)
	wire.AddVarintBytes(b, c.ConfirmedTranscriptHash)
	MarshalExtensions(b, c.Extensions)
}

// Unmarshal reads a GroupContext from s into c, and reports whether it was
// well formed. It copies what it keeps from s.
//
// Most users won't need Unmarshal; see [ParseGroupContext].
func (c *GroupContext) Unmarshal(s *cryptobyte.String) bool {
	var v, suite uint16
	var out GroupContext
	if !s.ReadUint16(&v) || !s.ReadUint16(&suite) ||
		!wire.ReadVarintBytes(s, &out.GroupID) ||
		!s.ReadUint64(&out.Epoch) ||
		!wire.ReadVarintBytes(s, &out.TreeHash) ||
		!wire.ReadVarintBytes(s, &out.ConfirmedTranscriptHash) ||
		!UnmarshalExtensions(s, &out.Extensions) {
		return false
	}
	out.Version, out.CipherSuite = ProtocolVersion(v), hpke.CipherSuite(suite)
	*c = out
	return true
}

// Bytes returns the TLS encoding of c. It panics if a field is too long to
// encode (more than 2^30-1 bytes), which no valid group reaches.
func (c *GroupContext) Bytes() []byte {
	return wire.MustMarshal(c.Marshal)
}

// ParseGroupContext decodes a GroupContext. It rejects trailing data, so
// that [GroupContext.Bytes] gives back b exactly. It does not check the
// version, cipher suite or extensions for support. Errors match
// [ErrMalformed].
func ParseGroupContext(b []byte) (*GroupContext, error) {
	var c GroupContext
	if err := wire.Parse(b, c.Unmarshal); err != nil {
		return nil, fmt.Errorf("%w: GroupContext: %w", ErrMalformed, err)
	}
	return &c, nil
}

// MarshalExtensions appends the encoding of an extension list,
// Extension extensions<V>, to b.
func MarshalExtensions(b *cryptobyte.Builder, exts []Extension) { ext.MarshalExtensions(b, exts) }

// UnmarshalExtensions reads an extension list, Extension extensions<V>,
// from s into out and reports whether it was well formed. An empty list
// decodes as nil. It copies the extension data.
func UnmarshalExtensions(s *cryptobyte.String, out *[]Extension) bool {
	return ext.UnmarshalExtensions(s, out)
}
