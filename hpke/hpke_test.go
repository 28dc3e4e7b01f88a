package hpke

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCipherSuites(t *testing.T) {
	all := CipherSuites()
	if len(all) != 7 {
		t.Fatalf("CipherSuites() has %d suites, want 7", len(all))
	}
	for i, cs := range all {
		if cs != CipherSuite(i+1) || !cs.Supported() {
			t.Errorf("CipherSuites()[%d] = %v", i, cs)
		}
	}
	for _, cs := range []CipherSuite{0, 8, 0xffff} {
		if cs.Supported() {
			t.Errorf("%v.Supported() = true", cs)
		}
		if _, err := cs.GenerateKeyPair(); !errors.Is(err, ErrUnsupportedCipherSuite) {
			t.Errorf("%v.GenerateKeyPair() error = %v", cs, err)
		}
		if err := cs.Verify(nil, nil, nil); !errors.Is(err, ErrUnsupportedCipherSuite) {
			t.Errorf("%v.Verify() error = %v", cs, err)
		}
	}
	if got := CipherSuite(0x0a0b).String(); got != "CipherSuite(0x0a0b)" {
		t.Errorf("String() = %q", got)
	}
	if got := MLS_256_DHKEMP384_AES256GCM_SHA384_P384.String(); got != "MLS_256_DHKEMP384_AES256GCM_SHA384_P384" {
		t.Errorf("String() = %q", got)
	}
}

func TestSizes(t *testing.T) {
	want := map[CipherSuite][3]int{ // Nh, Nk, Nn
		1: {32, 16, 12}, 2: {32, 16, 12}, 3: {32, 32, 12}, 4: {64, 32, 12},
		5: {64, 32, 12}, 6: {64, 32, 12}, 7: {48, 32, 12},
	}
	for cs, w := range want {
		if got := [3]int{cs.HashSize(), cs.AEADKeySize(), cs.AEADNonceSize()}; got != w {
			t.Errorf("%v sizes = %v, want %v", cs, got, w)
		}
		if n := len(cs.Hash(nil)); n != w[0] {
			t.Errorf("%v: len(Hash) = %d", cs, n)
		}
		h := cs.NewHash()
		h.Write([]byte("abc"))
		if !bytes.Equal(h.Sum(nil), cs.Hash([]byte("abc"))) {
			t.Errorf("%v: NewHash and Hash disagree", cs)
		}
	}
}

func TestMAC(t *testing.T) {
	for _, cs := range CipherSuites() {
		key, data := []byte("key"), []byte("data")
		tag := cs.MAC(key, data)
		if len(tag) != cs.HashSize() {
			t.Errorf("%v: MAC is %d bytes", cs, len(tag))
		}
		if !cs.VerifyMAC(key, data, tag) {
			t.Errorf("%v: VerifyMAC rejected a good tag", cs)
		}
		bad := bytes.Clone(tag)
		bad[3] ^= 1
		if cs.VerifyMAC(key, data, bad) || cs.VerifyMAC(key, data, tag[:5]) || cs.VerifyMAC([]byte("kez"), data, tag) {
			t.Errorf("%v: VerifyMAC accepted a bad tag", cs)
		}
		// HKDF consistency: Expand of Extract has the requested length.
		if out := cs.Expand(cs.Extract(nil, key), data, 100); len(out) != 100 {
			t.Errorf("%v: Expand gave %d bytes", cs, len(out))
		}
	}
}

func TestAEAD(t *testing.T) {
	for _, cs := range CipherSuites() {
		key := make([]byte, cs.AEADKeySize())
		nonce := make([]byte, cs.AEADNonceSize())
		rand.Read(key)
		ct, err := cs.AEADSeal(key, nonce, []byte("aad"), []byte("hello"))
		require.NoError(t, err)
		pt, err := cs.AEADOpen(key, nonce, []byte("aad"), ct)
		if err != nil || string(pt) != "hello" {
			t.Errorf("%v: AEADOpen = %q, %v", cs, pt, err)
		}
		ct[0] ^= 1
		if _, err := cs.AEADOpen(key, nonce, []byte("aad"), ct); !errors.Is(err, ErrDecryption) {
			t.Errorf("%v: tampered AEADOpen error = %v", cs, err)
		}
		if _, err := cs.AEADOpen(key[1:], nonce, nil, ct); !errors.Is(err, ErrDecryption) {
			t.Errorf("%v: short-key AEADOpen error = %v", cs, err)
		}
		if _, err := cs.AEADOpen(key, nonce[1:], nil, ct); !errors.Is(err, ErrDecryption) {
			t.Errorf("%v: short-nonce AEADOpen error = %v", cs, err)
		}
		if _, err := cs.AEADSeal(key[1:], nonce, nil, nil); err == nil {
			t.Errorf("%v: AEADSeal accepted a short key", cs)
		}
	}
}

func TestDeriveKeyPair(t *testing.T) {
	for _, cs := range testSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			seen := map[string]bool{}
			for _, n := range []int{0, 16, 32, 64, 65, 200} {
				ikm := make([]byte, n)
				rand.Read(ikm)
				k1, err := cs.DeriveKeyPair(ikm)
				require.NoError(t, err, "ikm %d bytes", n)
				k2, err := cs.DeriveKeyPair(bytes.Clone(ikm))
				require.NoError(t, err)
				if !bytes.Equal(k1.Bytes(), k2.Bytes()) || !bytes.Equal(k1.PublicKey(), k2.PublicKey()) {
					t.Errorf("ikm %d bytes: DeriveKeyPair is not deterministic", n)
				}
				if seen[string(k1.PublicKey())] {
					t.Errorf("ikm %d bytes: repeated key", n)
				}
				seen[string(k1.PublicKey())] = true
				if k1.Suite() != cs {
					t.Errorf("Suite() = %v", k1.Suite())
				}
				testKeyPair(t, cs, k1)
			}
		})
	}
}

// testKeyPair checks serialization round trips and an HPKE round trip.
func testKeyPair(t *testing.T, cs CipherSuite, k *PrivateKey) {
	t.Helper()
	if err := cs.ValidatePublicKey(k.PublicKey()); err != nil {
		t.Errorf("ValidatePublicKey: %v", err)
	}
	k2, err := cs.NewPrivateKey(k.Bytes())
	require.NoError(t, err, "NewPrivateKey(Bytes())")
	if !bytes.Equal(k2.Bytes(), k.Bytes()) || !bytes.Equal(k2.PublicKey(), k.PublicKey()) {
		t.Errorf("private key round trip changed the key")
	}
	enc, ct, err := cs.Seal(k.PublicKey(), []byte("info"), []byte("aad"), []byte("msg"))
	require.NoError(t, err)
	if pt, err := cs.Open(k2, enc, []byte("info"), []byte("aad"), ct); err != nil || string(pt) != "msg" {
		t.Errorf("Open = %q, %v", pt, err)
	}
}

func TestKeyPairs(t *testing.T) {
	nsk := map[CipherSuite]int{1: 32, 2: 32, 3: 32, 4: 56, 5: 66, 6: 56, 7: 48}
	npk := map[CipherSuite]int{1: 32, 2: 65, 3: 32, 4: 56, 5: 133, 6: 56, 7: 97}
	for _, cs := range CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			k, err := cs.GenerateKeyPair()
			require.NoError(t, err)
			if len(k.Bytes()) != nsk[cs] || len(k.PublicKey()) != npk[cs] {
				t.Errorf("sizes %d/%d, want %d/%d", len(k.Bytes()), len(k.PublicKey()), nsk[cs], npk[cs])
			}
			testKeyPair(t, cs, k)
			// Bytes and PublicKey return copies.
			b := k.Bytes()
			b[0] ^= 0xff
			pub := k.PublicKey()
			pub[1] ^= 0xff
			testKeyPair(t, cs, k)

			if _, err := cs.NewPrivateKey(append(k.Bytes(), 0)); !errors.Is(err, ErrInvalidPrivateKey) {
				t.Errorf("long private key: %v", err)
			}
			if _, err := cs.NewPrivateKey(nil); !errors.Is(err, ErrInvalidPrivateKey) {
				t.Errorf("empty private key: %v", err)
			}
			// A NIST scalar with its leading zero byte stripped is the same
			// key; an X25519/X448 key of the wrong length is refused.
			short, err := cs.NewPrivateKey(append([]byte{0}, k.Bytes()[1:]...)[1:])
			if k.Bytes()[0] == 0 && err == nil && !bytes.Equal(short.PublicKey(), k.PublicKey()) {
				t.Errorf("stripped private key gives another public key")
			}
			switch cs {
			case MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
				MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448, MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448:
				if _, err := cs.NewPrivateKey(k.Bytes()[1:]); !errors.Is(err, ErrInvalidPrivateKey) {
					t.Errorf("short X25519/X448 private key: %v", err)
				}
			}
			if err := cs.ValidatePublicKey(k.PublicKey()[1:]); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("short public key: %v", err)
			}
			if _, _, err := cs.Seal(k.PublicKey()[1:], nil, nil, nil); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("Seal to a short public key: %v", err)
			}
			if cs.params().kem.(*kem).bitmask != 0 {
				zero := make([]byte, nsk[cs])
				if _, err := cs.NewPrivateKey(zero); !errors.Is(err, ErrInvalidPrivateKey) {
					t.Errorf("zero scalar: %v", err)
				}
				over := bytes.Repeat([]byte{0xff}, nsk[cs])
				if _, err := cs.NewPrivateKey(over); !errors.Is(err, ErrInvalidPrivateKey) {
					t.Errorf("scalar over the order: %v", err)
				}
				offCurve := k.PublicKey()
				offCurve[len(offCurve)-1] ^= 1
				if err := cs.ValidatePublicKey(offCurve); !errors.Is(err, ErrInvalidPublicKey) {
					t.Errorf("point off the curve: %v", err)
				}
			}
		})
	}
}

func TestHPKE(t *testing.T) {
	for _, cs := range testSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			k, err := cs.GenerateKeyPair()
			require.NoError(t, err)
			info, aad, msg := []byte("info"), []byte("aad"), []byte("a message")
			enc, ct, err := cs.Seal(k.PublicKey(), info, aad, msg)
			require.NoError(t, err)
			if pt, err := cs.Open(k, enc, info, aad, ct); err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("Open = %q, %v", pt, err)
			}
			enc2, ct2, _ := cs.Seal(k.PublicKey(), info, aad, msg)
			if bytes.Equal(enc, enc2) || bytes.Equal(ct, ct2) {
				t.Errorf("Seal is deterministic")
			}
			other, _ := cs.GenerateKeyPair()
			cases := map[string]func() ([]byte, error){
				"ciphertext": func() ([]byte, error) {
					bad := bytes.Clone(ct)
					bad[len(bad)-1] ^= 1
					return cs.Open(k, enc, info, aad, bad)
				},
				"kem output": func() ([]byte, error) {
					bad := bytes.Clone(enc)
					bad[len(bad)/2] ^= 4
					return cs.Open(k, bad, info, aad, ct)
				},
				"short kem output": func() ([]byte, error) { return cs.Open(k, enc[1:], info, aad, ct) },
				"empty ciphertext": func() ([]byte, error) { return cs.Open(k, enc, info, aad, nil) },
				"info":             func() ([]byte, error) { return cs.Open(k, enc, []byte("infp"), aad, ct) },
				"aad":              func() ([]byte, error) { return cs.Open(k, enc, info, []byte("aae"), ct) },
				"key":              func() ([]byte, error) { return cs.Open(other, enc, info, aad, ct) },
			}
			for name, f := range cases {
				if _, err := f(); !errors.Is(err, ErrDecryption) {
					t.Errorf("tampered %s: error %v, want ErrDecryption", name, err)
				}
			}

			// Exporter.
			enc, secret, err := cs.SealExport(k.PublicKey(), info, []byte("ctx"), 40)
			require.NoError(t, err)
			if len(secret) != 40 {
				t.Errorf("SealExport gave %d bytes", len(secret))
			}
			got, err := cs.OpenExport(k, enc, info, []byte("ctx"), 40)
			if err != nil || !bytes.Equal(got, secret) {
				t.Errorf("OpenExport = %x, %v, want %x", got, err, secret)
			}
			if got, _ := cs.OpenExport(k, enc, info, []byte("cty"), 40); bytes.Equal(got, secret) {
				t.Errorf("OpenExport ignores the exporter context")
			}
			if _, err := cs.OpenExport(k, enc[1:], info, []byte("ctx"), 40); !errors.Is(err, ErrDecryption) {
				t.Errorf("OpenExport with a short kem output: %v", err)
			}
			if _, _, err := cs.SealExport(k.PublicKey(), info, nil, 255*cs.HashSize()+1); err == nil {
				t.Errorf("SealExport accepted an over-long length")
			}

			// A key of another KEM is refused.
			for _, cs2 := range CipherSuites() {
				if cs2.params().kem.kemID() == cs.params().kem.kemID() {
					continue
				}
				if _, err := cs2.Open(k, enc, info, aad, ct); !errors.Is(err, ErrInvalidPrivateKey) {
					t.Errorf("Open with a %v key under %v: %v", cs, cs2, err)
				}
			}
			if _, err := cs.Open(nil, enc, info, aad, ct); !errors.Is(err, ErrInvalidPrivateKey) {
				t.Errorf("Open with a nil key: %v", err)
			}
		})
	}
}

func TestLowOrderPoints(t *testing.T) {
	// All-zero public keys are low-order points for X25519 and X448 (and not
	// points at all for NIST curves): Seal must refuse them and Open must
	// fail on such a KEM output.
	for _, cs := range CipherSuites() {
		k, _ := cs.GenerateKeyPair()
		zero := make([]byte, len(k.PublicKey()))
		if _, _, err := cs.Seal(zero, nil, nil, nil); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("%v: Seal to the zero point: %v", cs, err)
		}
		if _, err := cs.Open(k, zero, nil, nil, make([]byte, 16)); !errors.Is(err, ErrDecryption) {
			t.Errorf("%v: Open of the zero point: %v", cs, err)
		}
	}
}

func TestSignatures(t *testing.T) {
	for _, cs := range testSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			k, err := cs.GenerateSignatureKey()
			require.NoError(t, err)
			if k.Suite() != cs {
				t.Errorf("Suite() = %v", k.Suite())
			}
			pub := k.PublicKey()
			require.NoError(t, cs.ValidateSignaturePublicKey(pub))
			k2, err := cs.NewSignaturePrivateKey(k.Bytes())
			require.NoError(t, err)
			if !bytes.Equal(k2.PublicKey(), pub) || !bytes.Equal(k2.Bytes(), k.Bytes()) {
				t.Errorf("signature key round trip changed the key")
			}
			sig, err := cs.SignWithLabel(k2, "Label", []byte("content"))
			require.NoError(t, err)
			if err := cs.VerifyWithLabel(pub, "Label", []byte("content"), sig); err != nil {
				t.Errorf("VerifyWithLabel: %v", err)
			}
			// The label is prefixed: a plain signature over the same bytes differs.
			if err := cs.Verify(pub, []byte("content"), sig); !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("Verify of a labeled signature as unlabeled: %v", err)
			}
			for i := range []int{0, len(sig) / 2, len(sig) - 1} {
				bad := bytes.Clone(sig)
				bad[i] ^= 0x10
				if err := cs.VerifyWithLabel(pub, "Label", []byte("content"), bad); !errors.Is(err, ErrInvalidSignature) {
					t.Errorf("tampered signature byte %d: %v", i, err)
				}
			}
			if err := cs.VerifyWithLabel(pub, "Label", []byte("contenu"), sig); !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("tampered content: %v", err)
			}
			if err := cs.VerifyWithLabel(pub, "Label", []byte("content"), sig[:len(sig)-1]); !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("truncated signature: %v", err)
			}
			if err := cs.Verify(pub[1:], []byte("content"), sig); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("short public key: %v", err)
			}
			if err := cs.ValidateSignaturePublicKey(pub[1:]); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("ValidateSignaturePublicKey(short): %v", err)
			}
			if _, err := cs.NewSignaturePrivateKey(append(k.Bytes(), 0)); !errors.Is(err, ErrInvalidPrivateKey) {
				t.Errorf("NewSignaturePrivateKey(long): %v", err)
			}
			if _, err := cs.NewSignaturePrivateKey(nil); !errors.Is(err, ErrInvalidPrivateKey) {
				t.Errorf("NewSignaturePrivateKey(empty): %v", err)
			}
			if _, err := cs.Sign(nil, nil); !errors.Is(err, ErrInvalidPrivateKey) {
				t.Errorf("Sign(nil key): %v", err)
			}
			// A key of another signature scheme is refused.
			for _, cs2 := range CipherSuites() {
				if cs2.params().sig == cs.params().sig {
					continue
				}
				if _, err := cs2.Sign(k, nil); !errors.Is(err, ErrInvalidPrivateKey) {
					t.Errorf("Sign with a %v key under %v: %v", cs, cs2, err)
				}
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	for _, cs := range testSuites() {
		k, _ := cs.GenerateKeyPair()
		s, _ := cs.GenerateSignatureKey()
		for _, v := range []any{k, s, *k, *s} {
			for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
				got := fmt.Sprintf(format, v)
				if got != "[redacted]" {
					t.Errorf("%v: Sprintf(%q, %T) = %q", cs, format, v, got)
				}
				if strings.Contains(got, fmt.Sprintf("%x", k.Bytes())) ||
					strings.Contains(got, fmt.Sprintf("%x", s.Bytes())) {
					t.Errorf("%v: Sprintf(%q) leaks the key", cs, format)
				}
			}
		}
		if k.String() != "[redacted]" || k.GoString() != "[redacted]" ||
			s.String() != "[redacted]" || s.GoString() != "[redacted]" {
			t.Errorf("%v: String/GoString not redacted", cs)
		}
	}
}

func TestDeriveTreeSecretLength(t *testing.T) {
	for _, cs := range testSuites() {
		a := cs.DeriveTreeSecret([]byte("s"), "key", 1, cs.AEADKeySize())
		b := cs.DeriveTreeSecret([]byte("s"), "key", 2, cs.AEADKeySize())
		if len(a) != cs.AEADKeySize() || bytes.Equal(a, b) {
			t.Errorf("%v: DeriveTreeSecret ignores the generation or length", cs)
		}
		if !bytes.Equal(cs.DeriveSecret([]byte("s"), "x"), cs.ExpandWithLabel([]byte("s"), "x", nil, cs.HashSize())) {
			t.Errorf("%v: DeriveSecret != ExpandWithLabel(..., Nh)", cs)
		}
	}
}
