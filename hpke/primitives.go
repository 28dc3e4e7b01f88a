package hpke

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// Hash returns H(data), the digest of data under the suite's hash function.
func (cs CipherSuite) Hash(data []byte) []byte {
	switch cs.mustParams().nh {
	case sha256.Size:
		h := sha256.Sum256(data)
		return h[:]
	case sha512.Size384:
		h := sha512.Sum384(data)
		return h[:]
	default:
		h := sha512.Sum512(data)
		return h[:]
	}
}

// NewHash returns a new instance of the suite's hash function, for hashing
// data incrementally.
func (cs CipherSuite) NewHash() hash.Hash { return cs.mustParams().newHash() }

// MAC returns HMAC(key, data) with the suite's hash function (RFC 9420,
// Section 5.1). Compare MACs with [CipherSuite.VerifyMAC], never with
// bytes.Equal.
func (cs CipherSuite) MAC(key, data []byte) []byte {
	m := hmac.New(cs.mustParams().newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// VerifyMAC reports whether tag equals MAC(key, data). The comparison takes
// constant time (it uses [hmac.Equal]).
func (cs CipherSuite) VerifyMAC(key, data, tag []byte) bool {
	return hmac.Equal(cs.MAC(key, data), tag)
}

// Extract returns HKDF-Extract(salt, ikm) with the suite's hash (RFC 5869).
// A nil or empty salt means Nh zero bytes.
func (cs CipherSuite) Extract(salt, ikm []byte) []byte {
	return extract(cs.mustParams().newHash, salt, ikm)
}

// Expand returns HKDF-Expand(prk, info, length) with the suite's hash
// (RFC 5869). It panics only if length exceeds 255*Nh, which callers in this
// module never request (an internal bug, not a peer-input condition).
func (cs CipherSuite) Expand(prk, info []byte, length int) []byte {
	return expand(cs.mustParams().newHash, prk, info, length)
}

func extract(h func() hash.Hash, salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(h, ikm, salt)
	if err != nil {
		panic("hpke: internal error: HKDF-Extract: " + err.Error())
	}
	return prk
}

func expand(h func() hash.Hash, prk, info []byte, length int) []byte {
	out, err := hkdf.Expand(h, prk, string(info), length)
	if err != nil {
		panic(fmt.Sprintf("hpke: internal error: HKDF-Expand of %d bytes: %v", length, err))
	}
	return out
}

// NewAEAD returns the suite's AEAD keyed with key, which must be
// [CipherSuite.AEADKeySize] bytes long.
func (cs CipherSuite) NewAEAD(key []byte) (cipher.AEAD, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	return p.newAEAD(key)
}

func (p *params) newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != p.nk {
		return nil, fmt.Errorf("hpke: AEAD key is %d bytes, want %d", len(key), p.nk)
	}
	switch p.aead {
	case aeadAES128GCM, aeadAES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case aeadChaCha20Poly1305:
		return chacha20poly1305.New(key)
	}
	panic("hpke: internal error: unknown AEAD")
}

// AEADSeal encrypts and authenticates plaintext and authenticates aad with
// the suite's AEAD under key and nonce, and returns a new slice holding the
// ciphertext and tag. The key must be Nk bytes and the nonce Nn bytes long.
func (cs CipherSuite) AEADSeal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := cs.NewAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, fmt.Errorf("hpke: AEAD nonce is %d bytes, want %d", len(nonce), a.NonceSize())
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

// AEADOpen authenticates and decrypts ciphertext (with its tag) and
// authenticates aad with the suite's AEAD under key and nonce. Any failure,
// including a key or nonce of the wrong size, returns an error matching
// [ErrDecryption].
func (cs CipherSuite) AEADOpen(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	return p.aeadOpen(key, nonce, aad, ciphertext)
}

func (p *params) aeadOpen(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := p.newAEAD(key)
	if err != nil || len(nonce) != a.NonceSize() {
		return nil, ErrDecryption
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrDecryption
	}
	return pt, nil
}
