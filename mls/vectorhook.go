package mls

import (
	"errors"

	"github.com/microchat/e2ee/internal/vectorhook"
	"github.com/microchat/e2ee/keyschedule"
)

// The message-protection test vectors give an epoch's secrets directly;
// package testvectors reaches the framer through internal/vectorhook so
// that it checks and generates them with this package's own code
// (RFC 9420, Section 6) without widening the public API.
func init() {
	vectorhook.Protect = vectorProtect
	vectorhook.Unprotect = vectorUnprotect
}

func vectorFramer(k *vectorhook.EpochKeys) (*framer, error) {
	cs := CipherSuite(k.CipherSuite)
	ctx, err := keyschedule.ParseGroupContext(k.GroupContext)
	if err != nil {
		return nil, err
	}
	st, err := keyschedule.NewSecretTree(cs, k.EncryptionSecret, k.LeafCount, nil)
	if err != nil {
		return nil, err
	}
	return &framer{
		cs: cs, groupID: ctx.GroupID, epoch: ctx.Epoch, groupContext: k.GroupContext,
		membershipKey: k.MembershipKey, senderDataSecret: k.SenderDataSecret, secretTree: st,
	}, nil
}

func vectorProtect(k *vectorhook.EpochKeys, signaturePriv, content []byte) ([]byte, error) {
	f, err := vectorFramer(k)
	if err != nil {
		return nil, err
	}
	ac, err := ParseAuthenticatedContent(content)
	if err != nil {
		return nil, err
	}
	priv, err := f.cs.NewSignaturePrivateKey(signaturePriv)
	if err != nil {
		return nil, err
	}
	if err := signContent(f.cs, priv, ac, f.groupContext); err != nil {
		return nil, err
	}
	msg := &MLSMessage{Version: MLS10, WireFormat: ac.WireFormat}
	switch ac.WireFormat {
	case WireFormatPublicMessage:
		msg.PublicMessage, err = f.protectPublic(ac)
	case WireFormatPrivateMessage:
		msg.PrivateMessage, err = f.protectPrivate(ac, func(int) int { return 0 })
	default:
		return nil, errors.New("mls: not a framed wire format")
	}
	if err != nil {
		return nil, err
	}
	return msg.Bytes()
}

func vectorUnprotect(k *vectorhook.EpochKeys, signaturePub, data []byte) ([]byte, error) {
	f, err := vectorFramer(k)
	if err != nil {
		return nil, err
	}
	m, err := ParseMessage(data)
	if err != nil {
		return nil, err
	}
	verify := func(ac *AuthenticatedContent) error {
		return verifyContent(f.cs, signaturePub, ac, f.groupContext)
	}
	var ac *AuthenticatedContent
	switch m.WireFormat {
	case WireFormatPublicMessage:
		if ac, err = f.unprotectPublic(m.PublicMessage); err == nil {
			err = verify(ac)
		}
	case WireFormatPrivateMessage:
		ac, err = f.unprotectPrivate(m.PrivateMessage, verify)
	default:
		return nil, errors.New("mls: not a framed wire format")
	}
	if err != nil {
		return nil, err
	}
	return ac.Bytes()
}
