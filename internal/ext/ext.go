// Package ext holds the MLS types that both treekem and keyschedule need,
// which do not import each other: the protocol version and extensions
// (RFC 9420, Sections 6 and 13.4). Both packages, and mls, re-export them
// as aliases, so callers name them as treekem.Extension, mls.Extension or
// keyschedule.Extension, all the same type.
package ext

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
)

// ProtocolVersion is an MLS protocol version (RFC 9420, Section 6).
type ProtocolVersion uint16

// MLS10 is the protocol version of RFC 9420.
const MLS10 ProtocolVersion = 1

// ExtensionType identifies an extension (RFC 9420, Section 17.3).
type ExtensionType uint16

// IsDefault reports whether t is one of the default extension types of RFC
// 9420, Section 7.2 (application_id through external_senders), which are
// implicitly supported by every client.
func (t ExtensionType) IsDefault() bool { return t >= 1 && t <= 5 }

// Extension is an MLS extension: a type and opaque data (RFC 9420,
// Section 13.4).
type Extension struct {
	Type ExtensionType
	Data []byte
}

// MarshalExtensions adds an `Extension extensions<V>` vector to b.
func MarshalExtensions(b *cryptobyte.Builder, exts []Extension) {
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for i := range exts {
			b.AddUint16(uint16(exts[i].Type))
			wire.AddVarintBytes(b, exts[i].Data)
		}
	})
}

// UnmarshalExtensions reads an `Extension extensions<V>` vector from s,
// copying the data once for the whole vector (the extensions' Data point
// into that copy). An empty vector is stored as nil. It does not reject
// repeated types; see [DuplicateExtension].
func UnmarshalExtensions(s *cryptobyte.String, out *[]Extension) bool {
	return wire.ReadSharedList(s, out, skipExtension, readExtension)
}

// UnmarshalExtensionsInPlace is [UnmarshalExtensions] without the copy:
// the extensions' Data point into s, which the caller must own and never
// modify afterwards (a buffer it decrypted, say).
func UnmarshalExtensionsInPlace(s *cryptobyte.String, out *[]Extension) bool {
	return wire.ReadList(s, out, skipExtension, readExtension)
}

func readExtension(s *cryptobyte.String, e *Extension) bool {
	return s.ReadUint16((*uint16)(&e.Type)) && wire.ReadVarintSlice(s, &e.Data)
}

func skipExtension(s *cryptobyte.String) bool {
	var e Extension
	return readExtension(s, &e)
}

// DuplicateExtension reports whether exts lists some extension type more
// than once, which RFC 9420, Section 13.4 forbids. It takes time linear in
// len(exts), however hostile the list.
func DuplicateExtension(exts []Extension) bool {
	if len(exts) <= 16 {
		for i := range exts {
			for j := range i {
				if exts[j].Type == exts[i].Type {
					return true
				}
			}
		}
		return false
	}
	// Extension types are 16-bit: one bit each, on the stack.
	var seen [1 << 16 / 64]uint64
	for i := range exts {
		t := exts[i].Type
		w, b := t>>6, uint64(1)<<(t&63)
		if seen[w]&b != 0 {
			return true
		}
		seen[w] |= b
	}
	return false
}
