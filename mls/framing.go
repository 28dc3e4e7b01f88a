package mls

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
)

// This file implements message framing (RFC 9420, §6): content signatures,
// membership tags, and PrivateMessage encryption.

const (
	labelFramedContent   = "FramedContentTBS"
	labelProposalRef     = "MLS 1.0 Proposal Reference"
	reuseGuardSize       = 4
	senderDataPlainSize  = 4 + 4 + reuseGuardSize
	maxPrivatePaddingLen = 1 << 16
)

// framer holds what one epoch needs to protect and unprotect messages.
type framer struct {
	cs               CipherSuite
	groupID          []byte
	epoch            uint64
	groupContext     []byte // serialized GroupContext
	membershipKey    []byte
	senderDataSecret []byte
	secretTree       *keyschedule.SecretTree
}

// framedContentTBS returns FramedContentTBS (RFC 9420, §6.1).
func framedContentTBS(wf WireFormat, c *FramedContent, groupContext []byte) ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(MLS10))
		b.AddUint16(uint16(wf))
		c.marshal(b)
		switch c.Sender.Type {
		case SenderTypeMember, SenderTypeNewMemberCommit:
			b.AddBytes(groupContext)
		}
	})
}

// signContent sets ac.Auth.Signature (RFC 9420, §6.1).
func signContent(cs CipherSuite, priv *hpke.SignaturePrivateKey, ac *AuthenticatedContent, groupContext []byte) error {
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, groupContext)
	if err != nil {
		return err
	}
	sig, err := cs.SignWithLabel(priv, labelFramedContent, tbs)
	if err != nil {
		return err
	}
	ac.Auth.Signature = sig
	return nil
}

// verifyContent checks ac's signature with pub (RFC 9420, §6.1).
func verifyContent(cs CipherSuite, pub []byte, ac *AuthenticatedContent, groupContext []byte) error {
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, groupContext)
	if err != nil {
		return malformed("framed content", err)
	}
	if err := cs.VerifyWithLabel(pub, labelFramedContent, tbs, ac.Auth.Signature); err != nil {
		return fmt.Errorf("%w: content signature", ErrInvalidSignature)
	}
	return nil
}

// membershipTag computes MAC(membership_key, AuthenticatedContentTBM)
// (RFC 9420, §6.2).
func (f *framer) membershipTag(ac *AuthenticatedContent) ([]byte, error) {
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, f.groupContext)
	if err != nil {
		return nil, err
	}
	tbm, err := wire.Marshal(func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		ac.Auth.marshal(b, ac.Content.ContentType)
	})
	if err != nil {
		return nil, err
	}
	return f.cs.MAC(f.membershipKey, tbm), nil
}

// protectPublic wraps ac, which must be signed, as a PublicMessage.
func (f *framer) protectPublic(ac *AuthenticatedContent) (*PublicMessage, error) {
	pm := &PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == SenderTypeMember {
		tag, err := f.membershipTag(ac)
		if err != nil {
			return nil, err
		}
		pm.MembershipTag = tag
	}
	return pm, nil
}

// unprotectPublic checks the group, epoch and membership tag of pm and
// returns its content. The signature is checked by the caller, who knows
// the sender's key.
func (f *framer) unprotectPublic(pm *PublicMessage) (*AuthenticatedContent, error) {
	ac := &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: pm.Content, Auth: pm.Auth}
	if ac.Content.Sender.Type == SenderTypeMember {
		tag, err := f.membershipTag(ac)
		if err != nil {
			return nil, malformed("public message", err)
		}
		if !hmac.Equal(tag, pm.MembershipTag) {
			return nil, fmt.Errorf("%w: membership tag", ErrDecryption)
		}
	}
	return ac, nil
}

// privateContentAAD returns PrivateContentAAD (RFC 9420, §6.3.1).
func privateContentAAD(groupID []byte, epoch uint64, ct ContentType, authenticatedData []byte) ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, groupID)
		b.AddUint64(epoch)
		b.AddUint8(uint8(ct))
		wire.AddVarintBytes(b, authenticatedData)
	})
}

// senderDataAAD returns SenderDataAAD (RFC 9420, §6.3.2).
func senderDataAAD(groupID []byte, epoch uint64, ct ContentType) ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, groupID)
		b.AddUint64(epoch)
		b.AddUint8(uint8(ct))
	})
}

func ratchetFor(ct ContentType) keyschedule.RatchetType {
	if ct == ContentTypeApplication {
		return keyschedule.Application
	}
	return keyschedule.Handshake
}

// applyReuseGuard XORs the reuse guard into the first bytes of a copy of
// nonce (RFC 9420, §6.3.1).
func applyReuseGuard(nonce []byte, guard [reuseGuardSize]byte) []byte {
	out := append([]byte(nil), nonce...)
	for i := range guard {
		out[i] ^= guard[i]
	}
	return out
}

// protectPrivate encrypts ac, which must be signed and sent by a member, as
// a PrivateMessage. padding returns how many zero bytes to append to a
// PrivateMessageContent of n bytes.
func (f *framer) protectPrivate(ac *AuthenticatedContent, padding func(n int) int) (*PrivateMessage, error) {
	c := &ac.Content
	if c.Sender.Type != SenderTypeMember {
		return nil, errors.New("mls: only members can send a PrivateMessage")
	}
	plaintext, err := wire.Marshal(func(b *cryptobyte.Builder) {
		c.marshalBody(b)
		ac.Auth.marshal(b, c.ContentType)
	})
	if err != nil {
		return nil, err
	}
	pad := padding(len(plaintext))
	if pad < 0 || pad > maxPrivatePaddingLen {
		return nil, errors.New("mls: invalid padding length")
	}
	plaintext = append(plaintext, make([]byte, pad)...)
	aad, err := privateContentAAD(c.GroupID, c.Epoch, c.ContentType, c.AuthenticatedData)
	if err != nil {
		return nil, err
	}
	key, err := f.secretTree.NextKey(c.Sender.Index, ratchetFor(c.ContentType))
	if err != nil {
		return nil, fmt.Errorf("mls: protecting message: %w", err)
	}
	defer key.Erase()
	var guard [reuseGuardSize]byte
	rand.Read(guard[:])
	nonce := applyReuseGuard(key.Nonce, guard)
	ciphertext, err := f.cs.AEADSeal(key.Key, nonce, aad, plaintext)
	clear(plaintext)
	if err != nil {
		return nil, err
	}

	senderData := make([]byte, 0, senderDataPlainSize)
	senderData = append(senderData, byte(c.Sender.Index>>24), byte(c.Sender.Index>>16), byte(c.Sender.Index>>8), byte(c.Sender.Index))
	g := key.Generation
	senderData = append(senderData, byte(g>>24), byte(g>>16), byte(g>>8), byte(g))
	senderData = append(senderData, guard[:]...)
	sdKey, sdNonce := keyschedule.SenderDataKey(f.cs, f.senderDataSecret, ciphertext)
	sdAAD, err := senderDataAAD(c.GroupID, c.Epoch, c.ContentType)
	if err != nil {
		return nil, err
	}
	encSenderData, err := f.cs.AEADSeal(sdKey, sdNonce, sdAAD, senderData)
	clear(sdKey)
	if err != nil {
		return nil, err
	}
	return &PrivateMessage{
		GroupID:             c.GroupID,
		Epoch:               c.Epoch,
		ContentType:         c.ContentType,
		AuthenticatedData:   c.AuthenticatedData,
		EncryptedSenderData: encSenderData,
		Ciphertext:          ciphertext,
	}, nil
}

// unprotectPrivate decrypts pm. It consumes the ratchet key only if the
// content decrypts and parses; check, if non-nil, runs on the decrypted
// content before the key is consumed (for the signature), so that a forged
// message consumes nothing. Every cryptographic failure is ErrDecryption.
func (f *framer) unprotectPrivate(pm *PrivateMessage, check func(*AuthenticatedContent) error) (*AuthenticatedContent, error) {
	sdKey, sdNonce := keyschedule.SenderDataKey(f.cs, f.senderDataSecret, pm.Ciphertext)
	defer clear(sdKey)
	sdAAD, err := senderDataAAD(pm.GroupID, pm.Epoch, pm.ContentType)
	if err != nil {
		return nil, malformed("private message", err)
	}
	senderData, err := f.cs.AEADOpen(sdKey, sdNonce, sdAAD, pm.EncryptedSenderData)
	if err != nil {
		return nil, fmt.Errorf("%w: sender data", ErrDecryption)
	}
	if len(senderData) != senderDataPlainSize {
		return nil, malformed("sender data", wire.ErrMalformed)
	}
	leaf := uint32(senderData[0])<<24 | uint32(senderData[1])<<16 | uint32(senderData[2])<<8 | uint32(senderData[3])
	gen := uint32(senderData[4])<<24 | uint32(senderData[5])<<16 | uint32(senderData[6])<<8 | uint32(senderData[7])
	var guard [reuseGuardSize]byte
	copy(guard[:], senderData[8:])
	// The sender's leaf index is range-checked before any use (RFC 9420,
	// §6.3.2): the secret tree has one leaf per leaf of the ratchet tree.
	if leaf >= f.secretTree.LeafCount() {
		return nil, leafOutOfRange("6.3.2", "sender leaf", leaf, f.secretTree.LeafCount())
	}

	aad, err := privateContentAAD(pm.GroupID, pm.Epoch, pm.ContentType, pm.AuthenticatedData)
	if err != nil {
		return nil, malformed("private message", err)
	}
	var ac *AuthenticatedContent
	err = f.secretTree.UseKey(leaf, ratchetFor(pm.ContentType), gen, func(k keyschedule.MessageKey) error {
		nonce := applyReuseGuard(k.Nonce, guard)
		plaintext, err := f.cs.AEADOpen(k.Key, nonce, aad, pm.Ciphertext)
		if err != nil {
			return fmt.Errorf("%w: content", ErrDecryption)
		}
		defer clear(plaintext)
		out := &AuthenticatedContent{
			WireFormat: WireFormatPrivateMessage,
			Content: FramedContent{
				GroupID:           pm.GroupID,
				Epoch:             pm.Epoch,
				Sender:            Sender{Type: SenderTypeMember, Index: leaf},
				AuthenticatedData: pm.AuthenticatedData,
				ContentType:       pm.ContentType,
			},
		}
		s := cryptobyte.String(plaintext)
		if !out.Content.unmarshalBody(&s) || !out.Auth.unmarshal(&s, pm.ContentType) {
			return malformed("private message content", wire.ErrMalformed)
		}
		for _, b := range s {
			if b != 0 {
				return malformed("private message padding", wire.ErrMalformed)
			}
		}
		if check != nil {
			if err := check(out); err != nil {
				return err
			}
		}
		ac = out
		return nil
	})
	if err != nil {
		if errors.Is(err, keyschedule.ErrKeyConsumed) {
			return nil, fmt.Errorf("%w: %w", ErrKeyUsed, err)
		}
		if errors.Is(err, keyschedule.ErrTooFarAhead) {
			return nil, fmt.Errorf("%w: %w", ErrTooFarAhead, err)
		}
		if errors.Is(err, keyschedule.ErrInvalidLeaf) {
			return nil, fmt.Errorf("%w: sender leaf %d", ErrDecryption, leaf)
		}
		return nil, err
	}
	return ac, nil
}

// proposalRef returns the ProposalRef of the proposal carried by ac (RFC
// 9420, §5.2).
func proposalRef(cs CipherSuite, ac *AuthenticatedContent) (ProposalRef, error) {
	enc, err := ac.Bytes()
	if err != nil {
		return nil, err
	}
	return cs.RefHash(labelProposalRef, enc), nil
}
