package hpke

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
)

// mlsLabelPrefix is prepended to every label of the labeled functions of
// RFC 9420 (Sections 5.1.2, 5.1.3 and 8).
const mlsLabelPrefix = "MLS 1.0 "

// labelPair serializes a struct of two opaque<V> fields: the label with the
// given prefix and value. This is RefHashInput (Section 5.2), SignContent
// (Section 5.1.2) and EncryptContext (Section 5.1.3).
// It fails only for values of 2^30 bytes or more, which MLS cannot encode.
func labelPair(prefix, label string, value []byte) ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		addVarintString(b, prefix, label)
		wire.AddVarintBytes(b, value)
	})
}

// addVarintString adds the opaque<V> vector prefix || label.
func addVarintString(b *cryptobyte.Builder, prefix, label string) {
	wire.AddVarint(b, uint32(len(prefix)+len(label)))
	b.AddBytes([]byte(prefix))
	b.AddBytes([]byte(label))
}

// RefHash returns RefHash(label, value) as specified in RFC 9420,
// Section 5.2: the hash of the serialized RefHashInput {label, value}. The
// label is used exactly as given, with no prefix added: the RFC passes the
// full label, as in RefHash("MLS 1.0 KeyPackage Reference", value).
func (cs CipherSuite) RefHash(label string, value []byte) []byte {
	in, err := labelPair("", label, value)
	if err != nil {
		panic("hpke: RefHash: " + err.Error())
	}
	return cs.Hash(in)
}

// ExpandWithLabel returns ExpandWithLabel(secret, label, context, length) as
// specified in RFC 9420, Section 8: HKDF-Expand of secret with the serialized
// KDFLabel {length, "MLS 1.0 " + label, context}. Pass the label without the
// "MLS 1.0 " prefix. length must be at most 255*Nh and context shorter than
// 2^30 bytes; anything else is an internal bug and panics.
func (cs CipherSuite) ExpandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	p := cs.mustParams()
	if length < 0 || length > 0xffff {
		panic("hpke: ExpandWithLabel length out of range")
	}
	info := wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint16(uint16(length))
		addVarintString(b, mlsLabelPrefix, label)
		wire.AddVarintBytes(b, context)
	})
	return expand(p.newHash, secret, info, length)
}

// DeriveSecret returns DeriveSecret(secret, label) as specified in RFC 9420,
// Section 8: ExpandWithLabel(secret, label, "", Nh). Pass the label without
// the "MLS 1.0 " prefix.
func (cs CipherSuite) DeriveSecret(secret []byte, label string) []byte {
	return cs.ExpandWithLabel(secret, label, nil, cs.HashSize())
}

// DeriveTreeSecret returns DeriveTreeSecret(secret, label, generation,
// length) as specified in RFC 9420, Section 9: ExpandWithLabel(secret, label,
// generation, length) with the generation as a big-endian uint32. Pass the
// label without the "MLS 1.0 " prefix.
func (cs CipherSuite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) []byte {
	var g [4]byte
	binary.BigEndian.PutUint32(g[:], generation)
	return cs.ExpandWithLabel(secret, label, g[:], length)
}

// SignWithLabel signs content with k as specified in RFC 9420,
// Section 5.1.2: it signs the serialized SignContent {"MLS 1.0 " + label,
// content}. Pass the label without the "MLS 1.0 " prefix.
func (cs CipherSuite) SignWithLabel(k *SignaturePrivateKey, label string, content []byte) ([]byte, error) {
	tbs, err := labelPair(mlsLabelPrefix, label, content)
	if err != nil {
		return nil, fmt.Errorf("hpke: SignWithLabel: %w", err)
	}
	return cs.Sign(k, tbs)
}

// VerifyWithLabel checks a signature made by [CipherSuite.SignWithLabel]
// with the same label and content (RFC 9420, Section 5.1.2). It returns an
// error matching [ErrInvalidPublicKey] if pub is malformed and
// [ErrInvalidSignature] if the signature does not verify.
func (cs CipherSuite) VerifyWithLabel(pub []byte, label string, content, sig []byte) error {
	var verr error
	if err := useLabelPair(mlsLabelPrefix, label, content, func(tbs []byte) { verr = cs.Verify(pub, tbs, sig) }); err != nil {
		return ErrInvalidSignature
	}
	return verr
}

// EncryptWithLabel encrypts plaintext to the HPKE public key pub as specified
// in RFC 9420, Section 5.1.3: [CipherSuite.Seal] with info set to the
// serialized EncryptContext {"MLS 1.0 " + label, context} and an empty aad.
// Pass the label without the "MLS 1.0 " prefix.
func (cs CipherSuite) EncryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	info, err := labelPair(mlsLabelPrefix, label, context)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke: EncryptWithLabel: %w", err)
	}
	return cs.Seal(pub, info, nil, plaintext)
}

// DecryptWithLabel decrypts a ciphertext made by [CipherSuite.EncryptWithLabel]
// with the same label and context (RFC 9420, Section 5.1.3). Every failure
// returns an error matching [ErrDecryption].
func (cs CipherSuite) DecryptWithLabel(k *PrivateKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	var pt []byte
	var oerr error
	if err := useLabelPair(mlsLabelPrefix, label, context, func(info []byte) { pt, oerr = cs.Open(k, kemOutput, info, nil, ciphertext) }); err != nil {
		return nil, ErrDecryption
	}
	return pt, oerr
}
