package hpke

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
)

// SignaturePrivateKey is a signing key of a suite's signature scheme. It
// must be kept secret. It prints as "[redacted]" with every fmt verb. A
// SignaturePrivateKey is immutable and safe for concurrent use.
type SignaturePrivateKey struct {
	suite CipherSuite
	ed    ed25519.PrivateKey
	ed448 ed448.PrivateKey
	ec    *ecdsa.PrivateKey
	mldsa *mldsaKey
	pub   []byte
}

// String returns "[redacted]", so that the key never appears in logs.
func (k SignaturePrivateKey) String() string { return redacted }

// GoString returns "[redacted]", so that the key never appears in logs.
func (k SignaturePrivateKey) GoString() string { return redacted }

// Format implements [fmt.Formatter]; every verb prints "[redacted]".
func (k SignaturePrivateKey) Format(f fmt.State, verb rune) { f.Write([]byte(redacted)) }

// Suite returns the cipher suite k belongs to.
func (k *SignaturePrivateKey) Suite() CipherSuite { return k.suite }

// PublicKey returns the serialized signature public key: the raw 32- or
// 57-byte key for Ed25519 and Ed448, the uncompressed SEC 1 point for ECDSA,
// the FIPS 204 encoding (1,312, 1,952 or 2,592 bytes) for ML-DSA.
// This is the SignaturePublicKey of RFC 9420, Section 5.1.1. The caller owns
// the returned slice.
func (k *SignaturePrivateKey) PublicKey() []byte { return append([]byte(nil), k.pub...) }

// Bytes returns the serialized private key in the form accepted by
// [CipherSuite.NewSignaturePrivateKey]: the RFC 8032 seed for Ed25519 and
// Ed448, the fixed-size big-endian scalar for ECDSA, the 32-byte seed of
// FIPS 204 (ML-DSA.KeyGen_internal) for ML-DSA. The result must be kept
// secret; the caller owns it.
func (k *SignaturePrivateKey) Bytes() []byte {
	switch {
	case k.mldsa != nil:
		return append([]byte(nil), k.mldsa.seed...)
	case k.ed != nil:
		return append([]byte(nil), k.ed.Seed()...)
	case k.ed448 != nil:
		return append([]byte(nil), k.ed448.Seed()...)
	default:
		b, err := k.ec.Bytes()
		if err != nil {
			panic("hpke: internal error: encoding ECDSA key: " + err.Error())
		}
		return b
	}
}

func (p *params) sigCurve() elliptic.Curve {
	switch p.sig {
	case sigECDSAP256SHA256:
		return elliptic.P256()
	case sigECDSAP384SHA384:
		return elliptic.P384()
	case sigECDSAP521SHA512:
		return elliptic.P521()
	}
	return nil
}

// sigHash is the hash ECDSA signs with: SHA-256, SHA-384 or SHA-512 as the
// signature scheme's name says. It equals the suite's hash for RFC 9420's
// suites but not for every PQ suite (MLS_128_MLKEM768P256_AES256GCM_SHA384_P256
// hashes with SHA-384 and signs with ECDSA P-256 over SHA-256).
func (p *params) sigHash() crypto.Hash {
	switch p.sig {
	case sigECDSAP256SHA256:
		return crypto.SHA256
	case sigECDSAP384SHA384:
		return crypto.SHA384
	default:
		return crypto.SHA512
	}
}

// GenerateSignatureKey returns a fresh random signing key for the suite's
// signature scheme.
func (cs CipherSuite) GenerateSignatureKey() (*SignaturePrivateKey, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	k := &SignaturePrivateKey{suite: cs}
	var err error
	switch p.sig {
	case sigMLDSA44, sigMLDSA65, sigMLDSA87:
		k.mldsa, k.pub, err = p.mldsa().generate()
	case sigEd25519:
		var pub ed25519.PublicKey
		pub, k.ed, err = ed25519.GenerateKey(rand.Reader)
		k.pub = pub
	case sigEd448:
		var pub ed448.PublicKey
		pub, k.ed448, err = ed448.GenerateKey(rand.Reader)
		k.pub = pub
	default:
		if k.ec, err = ecdsa.GenerateKey(p.sigCurve(), rand.Reader); err == nil {
			k.pub, err = k.ec.PublicKey.Bytes()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("hpke: generating signature key: %w", err)
	}
	return k, nil
}

// NewSignaturePrivateKey decodes a signing key: the 32-byte Ed25519 or
// 57-byte Ed448 seed of RFC 8032, for ECDSA the big-endian scalar of
// the curve's size (32, 48 or 66 bytes; shorter
// encodings whose leading zero bytes were stripped are accepted), for
// ML-DSA the 32-byte seed of FIPS 204. It returns an error matching
// [ErrInvalidPrivateKey] on malformed input. The caller may reuse b.
func (cs CipherSuite) NewSignaturePrivateKey(b []byte) (*SignaturePrivateKey, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	k := &SignaturePrivateKey{suite: cs}
	switch p.sig {
	case sigMLDSA44, sigMLDSA65, sigMLDSA87:
		var err error
		if k.mldsa, k.pub, err = p.mldsa().newKeyFromSeed(b); err != nil {
			return nil, err
		}
	case sigEd25519:
		if len(b) != ed25519.SeedSize {
			return nil, ErrInvalidPrivateKey
		}
		k.ed = ed25519.NewKeyFromSeed(b)
		k.pub = k.ed.Public().(ed25519.PublicKey)
	case sigEd448:
		if len(b) != ed448.SeedSize {
			return nil, ErrInvalidPrivateKey
		}
		k.ed448 = ed448.NewKeyFromSeed(b)
		k.pub = k.ed448.Public().(ed448.PublicKey)
	default:
		// Some encoders strip leading zero bytes of the scalar (the
		// official MLS vectors carry 65-byte P-521 keys): left-pad them.
		size := (p.sigCurve().Params().BitSize + 7) / 8
		if len(b) > 0 && len(b) < size {
			b = append(make([]byte, size-len(b), size), b...)
		}
		var err error
		if k.ec, err = ecdsa.ParseRawPrivateKey(p.sigCurve(), b); err != nil {
			return nil, ErrInvalidPrivateKey
		}
		if k.pub, err = k.ec.PublicKey.Bytes(); err != nil {
			return nil, ErrInvalidPrivateKey
		}
	}
	return k, nil
}

// ValidateSignaturePublicKey checks that pub is a well-formed signature
// public key of the suite: an uncompressed SEC 1 point on the curve for
// ECDSA, a string of the right length (32 or 57 bytes) for Ed25519 and Ed448,
// a FIPS 204 encoded key of the parameter set's length for ML-DSA.
// It returns an error matching [ErrInvalidPublicKey].
func (cs CipherSuite) ValidateSignaturePublicKey(pub []byte) error {
	p := cs.params()
	if p == nil {
		return ErrUnsupportedCipherSuite
	}
	switch p.sig {
	case sigMLDSA44, sigMLDSA65, sigMLDSA87:
		if _, err := p.mldsa().parsePublic(pub); err != nil {
			return err
		}
	case sigEd25519:
		if len(pub) != ed25519.PublicKeySize {
			return ErrInvalidPublicKey
		}
	case sigEd448:
		if len(pub) != ed448.PublicKeySize {
			return ErrInvalidPublicKey
		}
	default:
		if _, err := ecdsa.ParseUncompressedPublicKey(p.sigCurve(), pub); err != nil {
			return ErrInvalidPublicKey
		}
	}
	return nil
}

// Sign signs msg with k using the suite's signature scheme: pure Ed25519 or
// Ed448 (empty context), ECDSA over the message hashed with the scheme's
// hash, encoded in DER, or pure ML-DSA (FIPS 204, hedged, empty context). Most callers want [CipherSuite.SignWithLabel].
func (cs CipherSuite) Sign(k *SignaturePrivateKey, msg []byte) ([]byte, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	if k == nil {
		return nil, ErrInvalidPrivateKey
	}
	if kp := k.suite.params(); kp == nil || kp.sig != p.sig {
		return nil, fmt.Errorf("%w: key is for %v, not %v", ErrInvalidPrivateKey, k.suite, cs)
	}
	switch p.sig {
	case sigMLDSA44, sigMLDSA65, sigMLDSA87:
		return p.mldsa().sign(k.mldsa, msg)
	case sigEd25519:
		return ed25519.Sign(k.ed, msg), nil
	case sigEd448:
		return ed448.Sign(k.ed448, msg, ""), nil
	default:
		h := p.sigHash().New()
		h.Write(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, k.ec, h.Sum(nil))
		if err != nil {
			return nil, fmt.Errorf("hpke: signing: %w", err)
		}
		return sig, nil
	}
}

// Verify checks a signature made by [CipherSuite.Sign] over msg with the
// serialized public key pub. It returns an error matching
// [ErrInvalidPublicKey] if pub is malformed and [ErrInvalidSignature] if the
// signature does not verify. It never panics, whatever the input.
func (cs CipherSuite) Verify(pub, msg, sig []byte) error {
	p := cs.params()
	if p == nil {
		return ErrUnsupportedCipherSuite
	}
	switch p.sig {
	case sigMLDSA44, sigMLDSA65, sigMLDSA87:
		return p.mldsa().verifySig(pub, msg, sig)
	case sigEd25519:
		if len(pub) != ed25519.PublicKeySize {
			return ErrInvalidPublicKey
		}
		if !ed25519.Verify(pub, msg, sig) {
			return ErrInvalidSignature
		}
	case sigEd448:
		if len(pub) != ed448.PublicKeySize {
			return ErrInvalidPublicKey
		}
		if len(sig) != ed448.SignatureSize || !ed448.Verify(pub, msg, sig, "") {
			return ErrInvalidSignature
		}
	default:
		key, err := ecdsa.ParseUncompressedPublicKey(p.sigCurve(), pub)
		if err != nil {
			return ErrInvalidPublicKey
		}
		h := p.sigHash().New()
		h.Write(msg)
		if !ecdsa.VerifyASN1(key, h.Sum(nil), sig) {
			return ErrInvalidSignature
		}
	}
	return nil
}
