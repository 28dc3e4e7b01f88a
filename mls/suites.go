package mls

import "github.com/microchat/e2ee/hpke"

// CipherSuite identifies an MLS cipher suite (RFC 9420, Section 5.1). It is
// the same type as [hpke.CipherSuite], so callers need not import hpke.
type CipherSuite = hpke.CipherSuite

// The cipher suites of RFC 9420, Section 17.1, named as in the IANA registry.
const (
	MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519        = hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	MLS_128_DHKEMP256_AES128GCM_SHA256_P256             = hpke.MLS_128_DHKEMP256_AES128GCM_SHA256_P256
	MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 = hpke.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519
	MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448            = hpke.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448
	MLS_256_DHKEMP521_AES256GCM_SHA512_P521             = hpke.MLS_256_DHKEMP521_AES256GCM_SHA512_P521
	MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448     = hpke.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448
	MLS_256_DHKEMP384_AES256GCM_SHA384_P384             = hpke.MLS_256_DHKEMP384_AES256GCM_SHA384_P384
)

// SuiteDefinition describes a cipher suite by its components; it is the
// same type as [hpke.SuiteDefinition], where the definitions of the
// post-quantum suites of draft-ietf-mls-pq-ciphersuites and of deployed
// implementations live (for example
// [hpke.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519]).
type SuiteDefinition = hpke.SuiteDefinition

// RegisterCipherSuite makes the suite def available under the code point cs
// for KeyPackages, groups, ReInit, Welcome and stored state. It is
// [hpke.RegisterCipherSuite]; see there for the rules (register before use,
// identically in every process; a code point is never redefined; pick one in
// the private-use range 0xF000-0xFFFF of RFC 9420, Section 17.1 unless
// peers agreed on another). For example:
//
//	err := mls.RegisterCipherSuite(0xF001, hpke.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519)
func RegisterCipherSuite(cs CipherSuite, def SuiteDefinition) error {
	return hpke.RegisterCipherSuite(cs, def)
}
