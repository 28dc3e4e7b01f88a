package hpke

import (
	"crypto/rand"

	"github.com/cloudflare/circl/sign"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
)

// mldsaScheme is one ML-DSA parameter set of FIPS 204, from circl. MLS
// signs with pure ML-DSA (ML-DSA.Sign, FIPS 204, Algorithm 2) and an empty
// context string: the label of SignWithLabel already separates domains
// (RFC 9420, Section 5.1.2). Signing is hedged (fresh randomness mixed into
// the nonce), which FIPS 204 recommends; verification does not depend on it.
type mldsaScheme struct {
	scheme  sign.Scheme
	sigSize int
	// signTo writes a signature of msg into sig (sigSize bytes).
	signTo func(sk sign.PrivateKey, msg, sig []byte) error
	// verify reports whether sig is a valid signature of msg.
	verify func(pk sign.PublicKey, msg, sig []byte) bool
}

var (
	mldsa44Scheme = &mldsaScheme{
		scheme:  mldsa44.Scheme(),
		sigSize: mldsa44.SignatureSize,
		signTo: func(sk sign.PrivateKey, msg, sig []byte) error {
			return mldsa44.SignTo(sk.(*mldsa44.PrivateKey), msg, nil, true, sig)
		},
		verify: func(pk sign.PublicKey, msg, sig []byte) bool {
			return mldsa44.Verify(pk.(*mldsa44.PublicKey), msg, nil, sig)
		},
	}
	mldsa65Scheme = &mldsaScheme{
		scheme:  mldsa65.Scheme(),
		sigSize: mldsa65.SignatureSize,
		signTo: func(sk sign.PrivateKey, msg, sig []byte) error {
			return mldsa65.SignTo(sk.(*mldsa65.PrivateKey), msg, nil, true, sig)
		},
		verify: func(pk sign.PublicKey, msg, sig []byte) bool {
			return mldsa65.Verify(pk.(*mldsa65.PublicKey), msg, nil, sig)
		},
	}
	mldsa87Scheme = &mldsaScheme{
		scheme:  mldsa87.Scheme(),
		sigSize: mldsa87.SignatureSize,
		signTo: func(sk sign.PrivateKey, msg, sig []byte) error {
			return mldsa87.SignTo(sk.(*mldsa87.PrivateKey), msg, nil, true, sig)
		},
		verify: func(pk sign.PublicKey, msg, sig []byte) bool {
			return mldsa87.Verify(pk.(*mldsa87.PublicKey), msg, nil, sig)
		},
	}
)

// mldsa returns the ML-DSA parameter set of the suite, or nil.
func (p *params) mldsa() *mldsaScheme {
	switch p.sig {
	case sigMLDSA44:
		return mldsa44Scheme
	case sigMLDSA65:
		return mldsa65Scheme
	case sigMLDSA87:
		return mldsa87Scheme
	}
	return nil
}

// mldsaKey is an ML-DSA signing key and the seed it was derived from.
type mldsaKey struct {
	seed []byte // the 32-byte seed xi of ML-DSA.KeyGen_internal
	sk   sign.PrivateKey
}

// newKeyFromSeed derives the key pair of a 32-byte seed (FIPS 204,
// Algorithm 6, ML-DSA.KeyGen_internal).
func (m *mldsaScheme) newKeyFromSeed(seed []byte) (*mldsaKey, []byte, error) {
	if len(seed) != m.scheme.SeedSize() {
		return nil, nil, ErrInvalidPrivateKey
	}
	pk, sk := m.scheme.DeriveKey(seed)
	pub, err := pk.MarshalBinary()
	if err != nil {
		return nil, nil, ErrInvalidPrivateKey
	}
	return &mldsaKey{seed: append([]byte(nil), seed...), sk: sk}, pub, nil
}

func (m *mldsaScheme) generate() (*mldsaKey, []byte, error) {
	seed := make([]byte, m.scheme.SeedSize())
	rand.Read(seed)
	defer clear(seed)
	return m.newKeyFromSeed(seed)
}

func (m *mldsaScheme) parsePublic(pub []byte) (sign.PublicKey, error) {
	if len(pub) != m.scheme.PublicKeySize() {
		return nil, ErrInvalidPublicKey
	}
	pk, err := m.scheme.UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, ErrInvalidPublicKey
	}
	return pk, nil
}

func (m *mldsaScheme) sign(k *mldsaKey, msg []byte) ([]byte, error) {
	sig := make([]byte, m.sigSize)
	if err := m.signTo(k.sk, msg, sig); err != nil {
		return nil, err
	}
	return sig, nil
}

func (m *mldsaScheme) verifySig(pub, msg, sig []byte) error {
	pk, err := m.parsePublic(pub)
	if err != nil {
		return err
	}
	if len(sig) != m.sigSize || !m.verify(pk, msg, sig) {
		return ErrInvalidSignature
	}
	return nil
}
