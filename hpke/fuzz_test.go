package hpke

import (
	"errors"
	"testing"

	"github.com/microchat/e2ee/internal/vectortest"
)

// The fuzz targets feed arbitrary bytes to every function that parses peer
// input. Each checks that nothing panics and that failures are reported with
// this package's sentinel errors. Seeds are valid and invalid keys of every
// suite, generated at start, and the keys, signatures and ciphertexts of the
// official crypto-basics vectors when they are present.

func fuzzSeeds(f *testing.F) {
	for _, cs := range testSuites() {
		k, err := cs.GenerateKeyPair()
		if err != nil {
			f.Fatal(err)
		}
		s, err := cs.GenerateSignatureKey()
		if err != nil {
			f.Fatal(err)
		}
		sig, err := cs.Sign(s, []byte("msg"))
		if err != nil {
			f.Fatal(err)
		}
		b := byteOfSuite(cs)
		f.Add(b, k.PublicKey(), []byte("msg"), sig)
		f.Add(b, s.PublicKey(), []byte("msg"), sig)
		f.Add(b, k.Bytes(), []byte{}, sig[:len(sig)/2])
		f.Add(b, s.Bytes(), []byte{}, sig)
		f.Add(b, make([]byte, len(k.PublicKey())), []byte(nil), []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
		if _, ok := cs.Definition(); ok && cs > 7 {
			// A KEM output of the right size (ML-KEM-1024 ciphertexts are
			// 1,568 bytes) and a maximal-size signature.
			enc, ct, _ := cs.Seal(k.PublicKey(), nil, nil, []byte("msg"))
			f.Add(b, enc, []byte(nil), ct)
			f.Add(b, s.PublicKey(), []byte("msg"), make([]byte, len(sig)))
		}
	}
	// The official vectors' keys and signatures, when present.
	if vectortest.Dir() != "" {
		for _, v := range vectortest.Load[cryptoBasicsVector](f, "crypto-basics.json") {
			s := &v.SignWithLabel
			e := &v.EncryptWithLabel
			f.Add(uint8(v.CipherSuite-1), []byte(s.Pub), []byte(s.Content), []byte(s.Signature))
			f.Add(uint8(v.CipherSuite-1), []byte(e.Pub), []byte(e.KEMOutput), []byte(e.Ciphertext))
			f.Add(uint8(v.CipherSuite-1), []byte(e.KEMOutput), []byte(e.Context), []byte(e.Ciphertext))
		}
	}
	f.Add(uint8(0), []byte{}, []byte{}, []byte{})
	f.Add(uint8(9), []byte{4}, []byte{}, []byte{0x30, 0x00})
}

// suiteFromByte maps most inputs onto a supported suite (RFC 9420's below
// 200, the registered PQ test suites from 200 to 249) and keeps a few
// unsupported.
func suiteFromByte(b uint8) CipherSuite {
	switch {
	case b < 200:
		return CipherSuite(1 + b%7)
	case b < 250:
		pq := pqSuites()
		return pq[int(b-200)%len(pq)]
	}
	return CipherSuite(b)
}

// byteOfSuite is the inverse of suiteFromByte for supported suites.
func byteOfSuite(cs CipherSuite) uint8 {
	if cs <= 7 {
		return uint8(cs - 1)
	}
	return uint8(200 + int(cs) - pqTestBase)
}

func FuzzVerify(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, suite uint8, pub, msg, sig []byte) {
		cs := suiteFromByte(suite)
		err := cs.Verify(pub, msg, sig)
		if err == nil {
			if cs.ValidateSignaturePublicKey(pub) != nil {
				t.Fatalf("Verify accepted an invalid public key")
			}
			return
		}
		if !errors.Is(err, ErrInvalidSignature) && !errors.Is(err, ErrInvalidPublicKey) && !errors.Is(err, ErrUnsupportedCipherSuite) {
			t.Fatalf("Verify: unexpected error %v", err)
		}
		err = cs.VerifyWithLabel(pub, string(msg), msg, sig)
		if err != nil && !errors.Is(err, ErrInvalidSignature) && !errors.Is(err, ErrInvalidPublicKey) && !errors.Is(err, ErrUnsupportedCipherSuite) {
			t.Fatalf("VerifyWithLabel: unexpected error %v", err)
		}
	})
}

func FuzzValidatePublicKey(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, suite uint8, pub, _, _ []byte) {
		cs := suiteFromByte(suite)
		for _, err := range []error{cs.ValidatePublicKey(pub), cs.ValidateSignaturePublicKey(pub)} {
			if err != nil && !errors.Is(err, ErrInvalidPublicKey) && !errors.Is(err, ErrUnsupportedCipherSuite) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		if !cs.Supported() {
			return
		}
		// A key that validates must be usable by Seal, or be refused by it
		// as a low-order point with ErrInvalidPublicKey.
		if cs.ValidatePublicKey(pub) == nil {
			if _, _, err := cs.Seal(pub, nil, nil, nil); err != nil && !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("Seal: unexpected error %v", err)
			}
		}
	})
}

func FuzzNewPrivateKey(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, suite uint8, b, _, _ []byte) {
		cs := suiteFromByte(suite)
		if k, err := cs.NewPrivateKey(b); err == nil {
			if k == nil || cs.ValidatePublicKey(k.PublicKey()) != nil {
				t.Fatalf("NewPrivateKey returned an unusable key")
			}
		} else if k != nil || (!errors.Is(err, ErrInvalidPrivateKey) && !errors.Is(err, ErrUnsupportedCipherSuite)) {
			t.Fatalf("NewPrivateKey: %v, %v", k, err)
		}
		if k, err := cs.NewSignaturePrivateKey(b); err == nil {
			if k == nil || cs.ValidateSignaturePublicKey(k.PublicKey()) != nil {
				t.Fatalf("NewSignaturePrivateKey returned an unusable key")
			}
		} else if k != nil || (!errors.Is(err, ErrInvalidPrivateKey) && !errors.Is(err, ErrUnsupportedCipherSuite)) {
			t.Fatalf("NewSignaturePrivateKey: %v, %v", k, err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	keys := map[CipherSuite]*PrivateKey{}
	for _, cs := range testSuites() {
		k, err := cs.DeriveKeyPair([]byte("fuzz"))
		if err != nil {
			f.Fatal(err)
		}
		keys[cs] = k
	}
	f.Fuzz(func(t *testing.T, suite uint8, kemOutput, info, ct []byte) {
		cs := suiteFromByte(suite)
		k := keys[cs]
		if k == nil {
			return
		}
		if pt, err := cs.Open(k, kemOutput, info, nil, ct); err == nil || pt != nil || !errors.Is(err, ErrDecryption) {
			t.Fatalf("Open of random input: %x, %v", pt, err)
		}
		if _, err := cs.DecryptWithLabel(k, string(info), info, kemOutput, ct); !errors.Is(err, ErrDecryption) {
			t.Fatalf("DecryptWithLabel of random input: %v", err)
		}
		if _, err := cs.OpenExport(k, kemOutput, info, info, 32); err != nil && !errors.Is(err, ErrDecryption) {
			t.Fatalf("OpenExport: %v", err)
		}
	})
}
