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
	return wire.ReadVector(s, func(s *cryptobyte.String) bool {
		var id PreSharedKeyID
		if !id.Unmarshal(s) {
			return false
		}
		gs.PSKs = append(gs.PSKs, id)
		return true
	})
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
	return s.ReadUint16((*uint16)(&w.CipherSuite)) &&
		wire.ReadVector(s, func(s *cryptobyte.String) bool {
			var e EncryptedGroupSecrets
			if !wire.ReadVarintBytes(s, (*[]byte)(&e.NewMember)) || !e.EncryptedGroupSecrets.Unmarshal(s) {
				return false
			}
			w.Secrets = append(w.Secrets, e)
			return true
		}) &&
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
