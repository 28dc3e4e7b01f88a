// Package hpke implements the cryptographic primitives of the MLS cipher
// suites (RFC 9420, Section 5.1) and Hybrid Public Key Encryption in base mode
// (RFC 9180) on top of them.
//
// # Cipher suites
//
// A [CipherSuite] names a hash function, a KDF (HKDF with that hash), an AEAD,
// an HPKE KEM and a signature scheme, as registered by RFC 9420, Section 17.1.
// All seven suites of the registry are built in. Every operation is a method
// on the [CipherSuite] value, which is safe for concurrent use.
//
// # Post-quantum suites
//
// Other suites are defined by the application from their components with a
// [SuiteDefinition] and [RegisterCipherSuite], under a code point it
// chooses; from then on the code point works like a built-in suite. The
// KEMs include ML-KEM-512/768/1024 and the hybrids MLKEM768-X25519
// (X-Wing), MLKEM768-P256 and MLKEM1024-P384 of draft-ietf-hpke-pq, the
// signatures ML-DSA-44/65/87 (FIPS 204). [PostQuantumSuites] lists ready
// definitions: the eleven suites of draft-ietf-mls-pq-ciphersuites (such as
// [MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519]) and those deployed by
// ts-mls and OpenMLS. Their code points are not assigned by IANA.
//
// # Labeled functions
//
// The MLS labeled functions are provided as methods: [CipherSuite.RefHash]
// (Section 5.2), [CipherSuite.ExpandWithLabel] and [CipherSuite.DeriveSecret]
// (Section 8), [CipherSuite.DeriveTreeSecret] (Section 9),
// [CipherSuite.SignWithLabel] and [CipherSuite.VerifyWithLabel] (Section 5.1.2),
// and [CipherSuite.EncryptWithLabel] and [CipherSuite.DecryptWithLabel]
// (Section 5.1.3).
//
// # HPKE
//
// HPKE is implemented here rather than taken from crypto/hpke so that it works
// the same way for every KEM of the MLS suites, including DHKEM(X448), which
// the standard library does not offer. Only what MLS uses is implemented: base
// mode, single-shot Seal and Open (sequence number zero), and the exporter.
// The exception are the suites whose KEM is ML-KEM-768, ML-KEM-1024 or one of
// the hybrids: crypto/hpke does not expose their Encap and Decap, so HPKE for
// them runs whole in crypto/hpke. [CipherSuite.DeriveKeyPair] follows
// RFC 9180, Section 7.1.3 for the DHKEMs and draft-ietf-hpke-pq for the
// post-quantum KEMs, and accepts input keying material of any length.
//
// # Errors
//
// Failures on peer input are reported with the sentinel errors of this
// package ([ErrDecryption], [ErrInvalidSignature], [ErrInvalidPublicKey],
// [ErrInvalidPrivateKey], [ErrUnsupportedCipherSuite]), possibly wrapped;
// match them with [errors.Is]. No peer input causes a panic. Methods without
// an error result (such as [CipherSuite.Hash]) panic when called on a suite
// that is not [CipherSuite.Supported]; check suite identifiers read from the
// wire first.
//
// # Backends
//
// ML-KEM-768, ML-KEM-1024 and the three hybrid KEMs come from crypto/hpke,
// which then runs HPKE for those suites as a whole (it does not expose
// Encap and Decap); ML-KEM-512 comes from circl (crypto/hpke lacks it), and
// ML-DSA from circl (the standard library has no public ML-DSA). X25519 uses github.com/cloudflare/circl/dh/x25519, which measured about
// twice as fast as crypto/ecdh for key generation and derivation and about
// 1.4 times as fast for DH (see BenchmarkBackend). X448 and Ed448 use circl
// because the standard library has neither; everything else uses the
// standard library, and ChaCha20-Poly1305 comes from golang.org/x/crypto.
package hpke

import (
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
)

// CipherSuite is an MLS cipher suite identifier, as registered in the "MLS
// Cipher Suites" IANA registry (RFC 9420, Section 17.1).
type CipherSuite uint16

// The cipher suites of RFC 9420, Section 17.1. The names are those of the IANA
// registry.
const (
	MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519        CipherSuite = 0x0001
	MLS_128_DHKEMP256_AES128GCM_SHA256_P256             CipherSuite = 0x0002
	MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 CipherSuite = 0x0003
	MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448            CipherSuite = 0x0004
	MLS_256_DHKEMP521_AES256GCM_SHA512_P521             CipherSuite = 0x0005
	MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448     CipherSuite = 0x0006
	MLS_256_DHKEMP384_AES256GCM_SHA384_P384             CipherSuite = 0x0007
)

// Errors returned by this package. They may be wrapped; match them with
// [errors.Is].
var (
	// ErrUnsupportedCipherSuite is returned when a method is called on a
	// CipherSuite value that is not one of the supported suites.
	ErrUnsupportedCipherSuite = errors.New("hpke: unsupported cipher suite")
	// ErrDecryption is returned for every AEAD, KEM or HPKE failure while
	// opening a ciphertext. It deliberately carries no detail.
	ErrDecryption = errors.New("hpke: decryption failed")
	// ErrInvalidSignature is returned when a signature does not verify.
	ErrInvalidSignature = errors.New("hpke: invalid signature")
	// ErrInvalidPublicKey is returned when a public key (HPKE or signature)
	// cannot be decoded or is not valid for the suite.
	ErrInvalidPublicKey = errors.New("hpke: invalid public key")
	// ErrInvalidPrivateKey is returned when a serialized private key cannot
	// be decoded or is not valid for the suite.
	ErrInvalidPrivateKey = errors.New("hpke: invalid private key")
)

// aeadID is an HPKE AEAD identifier (RFC 9180, Section 7.3).
type aeadID uint16

const (
	aeadAES128GCM        aeadID = 0x0001
	aeadAES256GCM        aeadID = 0x0002
	aeadChaCha20Poly1305 aeadID = 0x0003
)

// sigScheme is the signature scheme of a suite (a TLS SignatureScheme).
type sigScheme uint16

const (
	sigECDSAP256SHA256 sigScheme = 0x0403
	sigECDSAP384SHA384 sigScheme = 0x0503
	sigECDSAP521SHA512 sigScheme = 0x0603
	sigEd25519         sigScheme = 0x0807
	sigEd448           sigScheme = 0x0808
	sigMLDSA44         sigScheme = 0x0904
	sigMLDSA65         sigScheme = 0x0905
	sigMLDSA87         sigScheme = 0x0906
)

// params holds everything a suite is made of.
type params struct {
	name    string
	hash    crypto.Hash
	newHash func() hash.Hash
	nh      int
	kdfID   uint16 // HPKE KDF identifier of HKDF with hash
	aead    aeadID
	nk, nn  int
	kem     kemScheme
	sig     sigScheme
	// hpkeSuiteID is "HPKE" || kem_id || kdf_id || aead_id (RFC 9180, Section 5.1).
	hpkeSuiteID []byte
	// def is the suite's definition (what CipherSuite.Definition returns).
	def SuiteDefinition
	// std is set when HPKE for this suite comes whole from crypto/hpke:
	// for the KEMs whose encapsulation crypto/hpke does not expose.
	std *stdSuite
}

func newParams(name string, h crypto.Hash, a aeadID, k kemScheme, s sigScheme) *params {
	p := &params{name: name, hash: h, aead: a, kem: k, sig: s}
	switch h {
	case crypto.SHA256:
		p.newHash, p.kdfID = sha256.New, 0x0001
	case crypto.SHA384:
		p.newHash, p.kdfID = sha512.New384, 0x0002
	case crypto.SHA512:
		p.newHash, p.kdfID = sha512.New, 0x0003
	default:
		panic("hpke: internal error: unknown hash")
	}
	p.nh = h.Size()
	switch a {
	case aeadAES128GCM:
		p.nk, p.nn = 16, 12
	case aeadAES256GCM, aeadChaCha20Poly1305:
		p.nk, p.nn = 32, 12
	default:
		panic("hpke: internal error: unknown AEAD")
	}
	id := k.kemID()
	p.hpkeSuiteID = []byte{'H', 'P', 'K', 'E',
		byte(id >> 8), byte(id), byte(p.kdfID >> 8), byte(p.kdfID), byte(a >> 8), byte(a)}
	p.def = SuiteDefinition{Name: name, KEM: KEM(id), KDF: KDF(p.kdfID), AEAD: AEAD(a), Signature: SignatureScheme(s)}
	if sk, ok := k.(*stdKEM); ok {
		p.std = newStdSuite(sk, p.kdfID, a)
	}
	return p
}

// builtinSuites holds the suites of RFC 9420, indexed by CipherSuite value;
// index 0 is unused. Other suites are registered (see RegisterCipherSuite).
var builtinSuites = [...]*params{
	MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: newParams("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		crypto.SHA256, aeadAES128GCM, kemX25519, sigEd25519),
	MLS_128_DHKEMP256_AES128GCM_SHA256_P256: newParams("MLS_128_DHKEMP256_AES128GCM_SHA256_P256",
		crypto.SHA256, aeadAES128GCM, kemP256, sigECDSAP256SHA256),
	MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519: newParams("MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
		crypto.SHA256, aeadChaCha20Poly1305, kemX25519, sigEd25519),
	MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448: newParams("MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448",
		crypto.SHA512, aeadAES256GCM, kemX448, sigEd448),
	MLS_256_DHKEMP521_AES256GCM_SHA512_P521: newParams("MLS_256_DHKEMP521_AES256GCM_SHA512_P521",
		crypto.SHA512, aeadAES256GCM, kemP521, sigECDSAP521SHA512),
	MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448: newParams("MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448",
		crypto.SHA512, aeadChaCha20Poly1305, kemX448, sigEd448),
	MLS_256_DHKEMP384_AES256GCM_SHA384_P384: newParams("MLS_256_DHKEMP384_AES256GCM_SHA384_P384",
		crypto.SHA384, aeadAES256GCM, kemP384, sigECDSAP384SHA384),
}

// params returns the suite's parameters, or nil if cs is not supported.
func (cs CipherSuite) params() *params {
	if int(cs) < len(builtinSuites) {
		return builtinSuites[cs]
	}
	if m := registry.Load(); m != nil {
		return (*m)[cs]
	}
	return nil
}

// mustParams returns the suite's parameters and panics if cs is not
// supported. It is used by the methods that have no error result; calling
// them on an unsupported suite is a programming error (check
// [CipherSuite.Supported] when the value comes from the wire).
func (cs CipherSuite) mustParams() *params {
	p := cs.params()
	if p == nil {
		panic(fmt.Sprintf("hpke: method called on unsupported %v", cs))
	}
	return p
}

// CipherSuites returns the seven cipher suites of RFC 9420 in increasing
// order of their identifiers; [RegisteredCipherSuites] returns the others.
// The caller owns the returned slice.
func CipherSuites() []CipherSuite {
	out := make([]CipherSuite, 0, len(builtinSuites)-1)
	for i, p := range builtinSuites {
		if p != nil {
			out = append(out, CipherSuite(i))
		}
	}
	return out
}

// Supported reports whether cs is a cipher suite implemented by this
// package: one of RFC 9420's seven or one registered with
// [RegisterCipherSuite].
// Methods without an error result panic when called on an unsupported suite,
// so check Supported for suite identifiers read from peer input.
func (cs CipherSuite) Supported() bool { return cs.params() != nil }

// String returns the IANA name of the suite (for a registered suite, the
// name it was registered with), or "CipherSuite(0x....)" for an unknown
// identifier.
func (cs CipherSuite) String() string {
	if p := cs.params(); p != nil {
		return p.name
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(cs))
}

// HashSize returns Nh, the output size in bytes of the suite's hash function,
// which is also the KDF's output size.
func (cs CipherSuite) HashSize() int { return cs.mustParams().nh }

// AEADKeySize returns Nk, the key size in bytes of the suite's AEAD.
func (cs CipherSuite) AEADKeySize() int { return cs.mustParams().nk }

// AEADNonceSize returns Nn, the nonce size in bytes of the suite's AEAD.
func (cs CipherSuite) AEADNonceSize() int { return cs.mustParams().nn }
