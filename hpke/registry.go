package hpke

import (
	"crypto"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// KEM is an HPKE KEM identifier, as registered in the "HPKE KEM Identifiers"
// IANA registry (RFC 9180, Section 7.1) and by draft-ietf-hpke-pq.
type KEM uint16

// The KEMs a [SuiteDefinition] may name.
const (
	KEM_DHKEM_P256_HKDF_SHA256   KEM = 0x0010 // RFC 9180
	KEM_DHKEM_P384_HKDF_SHA384   KEM = 0x0011 // RFC 9180
	KEM_DHKEM_P521_HKDF_SHA512   KEM = 0x0012 // RFC 9180
	KEM_DHKEM_X25519_HKDF_SHA256 KEM = 0x0020 // RFC 9180
	KEM_DHKEM_X448_HKDF_SHA512   KEM = 0x0021 // RFC 9180
	KEM_MLKEM512                 KEM = 0x0040 // draft-ietf-hpke-pq, ML-KEM-512 of FIPS 203
	KEM_MLKEM768                 KEM = 0x0041 // draft-ietf-hpke-pq, ML-KEM-768 of FIPS 203
	KEM_MLKEM1024                KEM = 0x0042 // draft-ietf-hpke-pq, ML-KEM-1024 of FIPS 203
	KEM_MLKEM768_P256            KEM = 0x0050 // draft-ietf-hpke-pq, hybrid ML-KEM-768 + P-256
	KEM_MLKEM1024_P384           KEM = 0x0051 // draft-ietf-hpke-pq, hybrid ML-KEM-1024 + P-384
	KEM_MLKEM768_X25519          KEM = 0x647a // draft-ietf-hpke-pq, hybrid ML-KEM-768 + X25519 (X-Wing)
)

// KDF is an HPKE KDF identifier (RFC 9180, Section 7.2). MLS uses a
// two-stage KDF built on the suite's hash (RFC 9420, Section 5.1), so only
// the HKDF identifiers are accepted; the KDF also fixes the suite's hash.
type KDF uint16

// The KDFs a [SuiteDefinition] may name.
const (
	KDF_HKDF_SHA256 KDF = 0x0001
	KDF_HKDF_SHA384 KDF = 0x0002
	KDF_HKDF_SHA512 KDF = 0x0003
)

// AEAD is an HPKE AEAD identifier (RFC 9180, Section 7.3).
type AEAD uint16

// The AEADs a [SuiteDefinition] may name.
const (
	AEAD_AES128GCM        AEAD = 0x0001
	AEAD_AES256GCM        AEAD = 0x0002
	AEAD_ChaCha20Poly1305 AEAD = 0x0003
)

// SignatureScheme is a TLS SignatureScheme value (the "TLS SignatureScheme"
// IANA registry) naming the signature algorithm of a suite, as RFC 9420,
// Section 5.1 does.
type SignatureScheme uint16

// The signature schemes a [SuiteDefinition] may name. ML-DSA is used in its
// pure form (FIPS 204, Algorithm 2) with an empty context string; the code
// points are those of draft-ietf-tls-mldsa.
const (
	ECDSA_P256_SHA256 SignatureScheme = 0x0403
	ECDSA_P384_SHA384 SignatureScheme = 0x0503
	ECDSA_P521_SHA512 SignatureScheme = 0x0603
	Ed25519           SignatureScheme = 0x0807
	Ed448             SignatureScheme = 0x0808
	MLDSA44           SignatureScheme = 0x0904
	MLDSA65           SignatureScheme = 0x0905
	MLDSA87           SignatureScheme = 0x0906
)

// SuiteDefinition describes an MLS cipher suite by its components: an HPKE
// KEM, KDF and AEAD and a signature scheme (RFC 9420, Section 5.1). The
// suite's hash is the hash of its KDF. Name is informative (it is what
// [CipherSuite.String] returns); the components alone decide whether two
// definitions are the same.
//
// Most users won't need to fill one in: this package has definitions for
// the suites of draft-ietf-mls-pq-ciphersuites and for the post-quantum
// suites deployed by other MLS implementations (see [RegisterCipherSuite]).
type SuiteDefinition struct {
	Name      string
	KEM       KEM
	KDF       KDF
	AEAD      AEAD
	Signature SignatureScheme
}

// sameComponents reports whether d and o describe the same suite.
func (d SuiteDefinition) sameComponents(o SuiteDefinition) bool {
	return d.KEM == o.KEM && d.KDF == o.KDF && d.AEAD == o.AEAD && d.Signature == o.Signature
}

// Errors returned by [RegisterCipherSuite]. They may be wrapped; match them
// with [errors.Is].
var (
	// ErrCipherSuiteTaken is returned when a code point is already in use
	// by a built-in suite or by a registered suite with other components.
	ErrCipherSuiteTaken = errors.New("hpke: cipher suite code point already in use")
	// ErrInvalidSuiteDefinition is returned when a SuiteDefinition names a
	// KEM, KDF, AEAD or signature scheme this package does not implement,
	// or when the code point is reserved.
	ErrInvalidSuiteDefinition = errors.New("hpke: invalid cipher suite definition")
)

// registry holds the registered suites. Readers load the map without a
// lock; writers (serialized by registryMu) copy it, add one entry and
// publish the copy, so a map once published is never modified.
var (
	registryMu sync.Mutex
	registry   atomic.Pointer[map[CipherSuite]*params]
)

// RegisterCipherSuite makes the suite described by def available under the
// code point cs, so that cs can then be used everywhere a suite is:
// KeyPackages, groups, ReInit, Welcome and stored state. It is safe for
// concurrent use, and lookups never block on it.
//
// Register a suite before any use of cs, typically from an init function or
// at program start, and register it identically in every process that
// handles the groups using it: a state stored under cs is loaded with the
// definition registered for cs at that time. Registering the same
// definition at the same code point again is a no-op; a code point can never
// be redefined. An application that registers the draft's X-Wing suite at a
// private-use code point writes, in one line:
//
//	err := hpke.RegisterCipherSuite(0xF001, hpke.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519)
//
// Code points: the IANA registry of RFC 9420, Section 17.1 reserves
// 0xF000-0xFFFF for private use; pick one there unless peers agreed on
// another value (the draft-ietf-mls-pq-ciphersuites suites have no assigned
// value yet, and deployed implementations use colliding ones). It returns an
// error matching [ErrCipherSuiteTaken] if cs is one of RFC 9420's seven
// suites or is registered with other components, and one matching
// [ErrInvalidSuiteDefinition] if cs is 0x0000 or a GREASE value
// (RFC 9420, Section 13.5) or def names a component this package does not
// implement.
func RegisterCipherSuite(cs CipherSuite, def SuiteDefinition) error {
	if cs == 0 || isGREASE(uint16(cs)) {
		return fmt.Errorf("%w: code point 0x%04x is reserved", ErrInvalidSuiteDefinition, uint16(cs))
	}
	if int(cs) < len(builtinSuites) && builtinSuites[cs] != nil {
		return fmt.Errorf("%w: 0x%04x is %v", ErrCipherSuiteTaken, uint16(cs), cs)
	}
	if def.Name == "" {
		def.Name = fmt.Sprintf("CipherSuite(0x%04x)", uint16(cs))
	}
	p, err := paramsFromDefinition(def)
	if err != nil {
		return err
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	old := registry.Load()
	if old != nil {
		if q, ok := (*old)[cs]; ok {
			if q.def.sameComponents(def) {
				return nil
			}
			return fmt.Errorf("%w: 0x%04x is registered as %s", ErrCipherSuiteTaken, uint16(cs), q.def.Name)
		}
	}
	m := make(map[CipherSuite]*params, 1+lenMap(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[cs] = p
	registry.Store(&m)
	return nil
}

func lenMap(m *map[CipherSuite]*params) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// isGREASE reports whether v is one of the GREASE values of RFC 9420,
// Section 13.5 (0x0A0A, 0x1A1A, ..., 0xEAEA; 0xFAFA is private use).
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>12 == (v>>4)&0xf && v != 0xfafa
}

// RegisteredCipherSuites returns the code points registered with
// [RegisterCipherSuite], in increasing order. The caller owns the slice.
func RegisteredCipherSuites() []CipherSuite {
	m := registry.Load()
	if m == nil {
		return nil
	}
	out := make([]CipherSuite, 0, len(*m))
	for cs := range *m {
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Definition returns the components of cs: for one of RFC 9420's suites
// the definition this package has built in, for a registered suite the one
// it was registered with. ok is false if cs is not supported.
func (cs CipherSuite) Definition() (def SuiteDefinition, ok bool) {
	p := cs.params()
	if p == nil {
		return SuiteDefinition{}, false
	}
	return p.def, true
}

// paramsFromDefinition checks def and builds the parameters of its suite.
func paramsFromDefinition(def SuiteDefinition) (*params, error) {
	var h crypto.Hash
	switch def.KDF {
	case KDF_HKDF_SHA256:
		h = crypto.SHA256
	case KDF_HKDF_SHA384:
		h = crypto.SHA384
	case KDF_HKDF_SHA512:
		h = crypto.SHA512
	default:
		return nil, fmt.Errorf("%w: KDF 0x%04x", ErrInvalidSuiteDefinition, uint16(def.KDF))
	}
	switch aeadID(def.AEAD) {
	case aeadAES128GCM, aeadAES256GCM, aeadChaCha20Poly1305:
	default:
		return nil, fmt.Errorf("%w: AEAD 0x%04x", ErrInvalidSuiteDefinition, uint16(def.AEAD))
	}
	k := kemByID(def.KEM)
	if k == nil {
		return nil, fmt.Errorf("%w: KEM 0x%04x", ErrInvalidSuiteDefinition, uint16(def.KEM))
	}
	switch sigScheme(def.Signature) {
	case sigEd25519, sigEd448, sigECDSAP256SHA256, sigECDSAP384SHA384, sigECDSAP521SHA512,
		sigMLDSA44, sigMLDSA65, sigMLDSA87:
	default:
		return nil, fmt.Errorf("%w: signature scheme 0x%04x", ErrInvalidSuiteDefinition, uint16(def.Signature))
	}
	return newParams(def.Name, h, aeadID(def.AEAD), k, sigScheme(def.Signature)), nil
}

// kemByID returns the implementation of an HPKE KEM, or nil.
func kemByID(id KEM) kemScheme {
	switch id {
	case KEM_DHKEM_P256_HKDF_SHA256:
		return kemP256
	case KEM_DHKEM_P384_HKDF_SHA384:
		return kemP384
	case KEM_DHKEM_P521_HKDF_SHA512:
		return kemP521
	case KEM_DHKEM_X25519_HKDF_SHA256:
		return kemX25519
	case KEM_DHKEM_X448_HKDF_SHA512:
		return kemX448
	case KEM_MLKEM512:
		return kemMLKEM512
	case KEM_MLKEM768:
		return kemMLKEM768
	case KEM_MLKEM1024:
		return kemMLKEM1024
	case KEM_MLKEM768_P256:
		return kemMLKEM768P256
	case KEM_MLKEM1024_P384:
		return kemMLKEM1024P384
	case KEM_MLKEM768_X25519:
		return kemMLKEM768X25519
	}
	return nil
}
