package hpke_test

import (
	"fmt"

	"github.com/microchat/e2ee/hpke"
)

// This example derives an HPKE key pair from a secret, encrypts to it with
// EncryptWithLabel, and signs and verifies with SignWithLabel, as MLS does
// for path secrets and leaf nodes.
func Example() {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

	// Derive a key pair from a node secret (RFC 9420, Section 7.4).
	pathSecret := make([]byte, cs.HashSize())
	nodeSecret := cs.DeriveSecret(pathSecret, "node")
	priv, err := cs.DeriveKeyPair(nodeSecret)
	if err != nil {
		panic(err)
	}

	// Encrypt to its public key and decrypt.
	kemOutput, ct, err := cs.EncryptWithLabel(priv.PublicKey(), "UpdatePathNode", []byte("group context"), []byte("hello"))
	if err != nil {
		panic(err)
	}
	pt, err := cs.DecryptWithLabel(priv, "UpdatePathNode", []byte("group context"), kemOutput, ct)
	if err != nil {
		panic(err)
	}
	fmt.Printf("decrypted %q\n", pt)

	// Sign and verify.
	sk, err := cs.GenerateSignatureKey()
	if err != nil {
		panic(err)
	}
	sig, err := cs.SignWithLabel(sk, "LeafNodeTBS", []byte("leaf node"))
	if err != nil {
		panic(err)
	}
	fmt.Println("signature valid:", cs.VerifyWithLabel(sk.PublicKey(), "LeafNodeTBS", []byte("leaf node"), sig) == nil)
	fmt.Println("private key prints as", priv)
	// Output:
	// decrypted "hello"
	// signature valid: true
	// private key prints as [redacted]
}

// This example registers the X-Wing suite of draft-ietf-mls-pq-ciphersuites
// at a private-use code point and uses it like a built-in suite.
func ExampleRegisterCipherSuite() {
	const xwing hpke.CipherSuite = 0xF001
	if err := hpke.RegisterCipherSuite(xwing, hpke.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519); err != nil {
		panic(err)
	}
	// A code point cannot be redefined.
	err := hpke.RegisterCipherSuite(xwing, hpke.MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87)
	fmt.Println(err != nil)

	priv, err := xwing.DeriveKeyPair(make([]byte, xwing.HashSize()))
	if err != nil {
		panic(err)
	}
	kemOutput, ct, err := xwing.EncryptWithLabel(priv.PublicKey(), "UpdatePathNode", nil, []byte("path secret"))
	if err != nil {
		panic(err)
	}
	pt, err := xwing.DecryptWithLabel(priv, "UpdatePathNode", nil, kemOutput, ct)
	if err != nil {
		panic(err)
	}
	fmt.Println(xwing, len(priv.PublicKey()), len(kemOutput), string(pt))
	// Output:
	// true
	// MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519 1216 1120 path secret
}
