package mls

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// GroupInfo describes a group to new members (RFC 9420, §12.4.3): the
// group's context and extensions, the confirmation tag of the epoch, and a
// signature by the member at leaf Signer.
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      []Extension
	ConfirmationTag []byte
	Signer          LeafIndex
	Signature       []byte
}

func (gi *GroupInfo) marshalTBS(b *cryptobyte.Builder) {
	gi.GroupContext.Marshal(b)
	treekem.MarshalExtensions(b, gi.Extensions)
	wire.AddVarintBytes(b, gi.ConfirmationTag)
	b.AddUint32(uint32(gi.Signer))
}

func (gi *GroupInfo) marshal(b *cryptobyte.Builder) {
	gi.marshalTBS(b)
	wire.AddVarintBytes(b, gi.Signature)
}

func (gi *GroupInfo) unmarshal(s *cryptobyte.String) bool {
	*gi = GroupInfo{}
	return gi.GroupContext.Unmarshal(s) &&
		treekem.UnmarshalExtensions(s, &gi.Extensions) &&
		wire.ReadVarintBytes(s, &gi.ConfirmationTag) &&
		s.ReadUint32((*uint32)(&gi.Signer)) &&
		wire.ReadVarintBytes(s, &gi.Signature)
}

// Bytes returns the encoding of gi (without the MLSMessage envelope).
func (gi *GroupInfo) Bytes() ([]byte, error) { return wire.Marshal(gi.marshal) }

// ParseGroupInfo decodes a GroupInfo (without the MLSMessage envelope).
func ParseGroupInfo(data []byte) (*GroupInfo, error) {
	gi := new(GroupInfo)
	if err := wire.Parse(data, gi.unmarshal); err != nil {
		return nil, malformed("group info", err)
	}
	return gi, nil
}

// GroupSecrets are the secrets a Welcome carries to one new member (RFC
// 9420, §12.4.3). PathSecret is nil when absent.
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   []byte
	PSKs         []PreSharedKeyID
}

func (gs *GroupSecrets) marshal(b *cryptobyte.Builder) {
	wire.AddVarintBytes(b, gs.JoinerSecret)
	wire.AddOptional(b, gs.PathSecret != nil, func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, gs.PathSecret) })
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for i := range gs.PSKs {
			gs.PSKs[i].Marshal(b)
		}
	})
}

func (gs *GroupSecrets) unmarshal(s *cryptobyte.String) bool {
	*gs = GroupSecrets{}
	var present bool
	if !wire.ReadVarintBytes(s, &gs.JoinerSecret) || !wire.ReadOptional(s, &present) {
		return false
	}
	if present && !wire.ReadVarintBytes(s, &gs.PathSecret) {
		return false
	}
	return wire.ReadList(s, &gs.PSKs, skipPSKID, func(s *cryptobyte.String, id *PreSharedKeyID) bool { return id.Unmarshal(s) })
}

// EncryptedGroupSecrets is a [GroupSecrets] encrypted to one new member's
// KeyPackage init key (RFC 9420, §12.4.3).
type EncryptedGroupSecrets struct {
	NewMember             KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

// Welcome brings new members into a group (RFC 9420, §12.4.3).
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

func (w *Welcome) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(w.CipherSuite))
	wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
		for i := range w.Secrets {
			wire.AddVarintBytes(b, w.Secrets[i].NewMember)
			w.Secrets[i].EncryptedGroupSecrets.Marshal(b)
		}
	})
	wire.AddVarintBytes(b, w.EncryptedGroupInfo)
}

func (w *Welcome) unmarshal(s *cryptobyte.String) bool {
	*w = Welcome{}
	if !s.ReadUint16((*uint16)(&w.CipherSuite)) {
		return false
	}
	// The entries are counted before the slice is allocated and share
	// one copy of the vector's bytes. No field of an entry can be empty:
	// new_member is a KeyPackageRef, a hash of the suite's size (§5.2),
	// and an HPKE ciphertext has an encapsulation and an AEAD tag.
	refSize := 0
	if w.CipherSuite.Supported() {
		refSize = w.CipherSuite.HashSize()
	}
	read := func(s *cryptobyte.String, e *EncryptedGroupSecrets) bool {
		c := &e.EncryptedGroupSecrets
		return wire.ReadVarintSlice(s, (*[]byte)(&e.NewMember)) &&
			len(e.NewMember) > 0 && (refSize == 0 || len(e.NewMember) == refSize) &&
			wire.ReadVarintSlice(s, &c.KEMOutput) && len(c.KEMOutput) > 0 &&
			wire.ReadVarintSlice(s, &c.Ciphertext) && len(c.Ciphertext) > 0
	}
	skip := func(s *cryptobyte.String) bool {
		var e EncryptedGroupSecrets
		return read(s, &e)
	}
	return wire.ReadSharedList(s, &w.Secrets, skip, read) &&
		wire.ReadVarintBytes(s, &w.EncryptedGroupInfo)
}

// Bytes returns the encoding of w (without the MLSMessage envelope).
func (w *Welcome) Bytes() ([]byte, error) { return wire.Marshal(w.marshal) }

// ParseWelcome decodes a Welcome (without the MLSMessage envelope).
func ParseWelcome(data []byte) (*Welcome, error) {
	w := new(Welcome)
	if err := wire.Parse(data, w.unmarshal); err != nil {
		return nil, malformed("welcome", err)
	}
	return w, nil
}
