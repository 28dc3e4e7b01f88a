package hpke

import (
	stdhpke "crypto/hpke"
	"crypto/rand"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"
)

// BenchmarkBackend compares the two X25519 backends (crypto/ecdh and
// circl/dh/x25519) as used by this package, and, as references, Seal and
// DeriveKeyPair of crypto/hpke and circl/hpke for the same HPKE suite
// (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM).
func BenchmarkBackend(b *testing.B) {
	backends := []struct {
		name string
		k    *kem
	}{{"stdlib", kemX25519Stdlib}, {"circl", kemX25519Circl}}
	ikm := make([]byte, 32)
	rand.Read(ikm)
	msg := make([]byte, 64)
	info := []byte("info")

	for _, be := range backends {
		p := newParams("bench", builtinSuites[1].hash, aeadAES128GCM, be.k, sigEd25519)
		recipient, err := be.k.deriveKeyPair(0, ikm)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("X25519/GenerateKeyPair/"+be.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := be.k.generate(0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("X25519/DH/"+be.name, func(b *testing.B) {
			e, _ := be.k.generate(0)
			for b.Loop() {
				if _, err := be.k.impl.dh(e, recipient.pk); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("X25519/DeriveKeyPair/"+be.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := be.k.deriveKeyPair(0, ikm); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("X25519/Seal/"+be.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := p.seal(0, recipient.pk, info, nil, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("X25519/Open/"+be.name, func(b *testing.B) {
			enc, ct, _ := p.seal(0, recipient.pk, info, nil, msg)
			for b.Loop() {
				if _, err := p.open(recipient, enc, info, nil, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	// References: whole-library implementations of the same operations.
	kemStd, _ := stdhpke.NewKEM(0x0020)
	kdfStd := stdhpke.HKDFSHA256()
	aeadStd := stdhpke.AES128GCM()
	stdPriv, err := kemStd.DeriveKeyPair(ikm)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("X25519/DeriveKeyPair/crypto-hpke", func(b *testing.B) {
		for b.Loop() {
			if _, err := kemStd.DeriveKeyPair(ikm); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("X25519/Seal/crypto-hpke", func(b *testing.B) {
		pub := stdPriv.PublicKey()
		for b.Loop() {
			if _, err := stdhpke.Seal(pub, kdfStd, aeadStd, info, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	circlSuite := circlhpke.NewSuite(circlhpke.KEM_X25519_HKDF_SHA256, circlhpke.KDF_HKDF_SHA256, circlhpke.AEAD_AES128GCM)
	circlPub, _ := circlhpke.KEM_X25519_HKDF_SHA256.Scheme().DeriveKeyPair(ikm)
	b.Run("X25519/DeriveKeyPair/circl-hpke", func(b *testing.B) {
		s := circlhpke.KEM_X25519_HKDF_SHA256.Scheme()
		for b.Loop() {
			s.DeriveKeyPair(ikm)
		}
	})
	b.Run("X25519/Seal/circl-hpke", func(b *testing.B) {
		for b.Loop() {
			s, err := circlSuite.NewSender(circlPub, info)
			if err != nil {
				b.Fatal(err)
			}
			_, sealer, err := s.Setup(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sealer.Seal(msg, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSuite measures the main operations of every cipher suite.
func BenchmarkSuite(b *testing.B) {
	msg := make([]byte, 64)
	for _, cs := range CipherSuites() {
		ikm := make([]byte, cs.HashSize())
		rand.Read(ikm)
		k, err := cs.DeriveKeyPair(ikm)
		if err != nil {
			b.Fatal(err)
		}
		sk, err := cs.GenerateSignatureKey()
		if err != nil {
			b.Fatal(err)
		}
		sig, _ := cs.SignWithLabel(sk, "bench", msg)
		enc, ct, _ := cs.EncryptWithLabel(k.PublicKey(), "bench", nil, msg)
		name := cs.String()
		b.Run(name+"/DeriveKeyPair", func(b *testing.B) {
			for b.Loop() {
				cs.DeriveKeyPair(ikm)
			}
		})
		b.Run(name+"/EncryptWithLabel", func(b *testing.B) {
			for b.Loop() {
				cs.EncryptWithLabel(k.PublicKey(), "bench", nil, msg)
			}
		})
		b.Run(name+"/DecryptWithLabel", func(b *testing.B) {
			for b.Loop() {
				if _, err := cs.DecryptWithLabel(k, "bench", nil, enc, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/SignWithLabel", func(b *testing.B) {
			for b.Loop() {
				cs.SignWithLabel(sk, "bench", msg)
			}
		})
		b.Run(name+"/VerifyWithLabel", func(b *testing.B) {
			pub := sk.PublicKey()
			for b.Loop() {
				if err := cs.VerifyWithLabel(pub, "bench", msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/ExpandWithLabel", func(b *testing.B) {
			for b.Loop() {
				cs.ExpandWithLabel(ikm, "bench", msg, cs.HashSize())
			}
		})
	}
}
