package hpke

import (
	"bytes"
	"crypto"
	stdhpke "crypto/hpke"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Official RFC 9180 test vectors are not available here, so this file
// cross-checks the HPKE implementation of this package against Go's
// crypto/hpke for every KEM the standard library supports, with every KDF and
// AEAD combination, and for both X25519 backends.

type hpkeCombo struct {
	name string
	p    *params
}

func stdlibCombos() []hpkeCombo {
	kems := []struct {
		name string
		k    *kem
	}{
		{"X25519-stdlib", kemX25519Stdlib},
		{"X25519-circl", kemX25519Circl},
		{"P256", kemP256},
		{"P384", kemP384},
		{"P521", kemP521},
	}
	hashes := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}
	aeads := []aeadID{aeadAES128GCM, aeadAES256GCM, aeadChaCha20Poly1305}
	var out []hpkeCombo
	for _, k := range kems {
		for _, h := range hashes {
			for _, a := range aeads {
				p := newParams("test", h, a, k.k, sigEd25519)
				out = append(out, hpkeCombo{
					name: fmt.Sprintf("%s/kdf=%d/aead=%d", k.name, p.kdfID, a),
					p:    p,
				})
			}
		}
	}
	return out
}

func stdlibSuite(t *testing.T, p *params) (stdhpke.KEM, stdhpke.KDF, stdhpke.AEAD) {
	t.Helper()
	k, err := stdhpke.NewKEM(p.kem.kemID())
	require.NoError(t, err)
	kdf, err := stdhpke.NewKDF(p.kdfID)
	require.NoError(t, err)
	aead, err := stdhpke.NewAEAD(uint16(p.aead))
	require.NoError(t, err)
	return k, kdf, aead
}

func clampX25519(b []byte) []byte {
	b = bytes.Clone(b)
	b[0] &= 248
	b[31] &= 127
	b[31] |= 64
	return b
}

func TestStdlibCrossCheck(t *testing.T) {
	for _, c := range stdlibCombos() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := c.p
			stdKEM, stdKDF, stdAEAD := stdlibSuite(t, p)
			const cs = CipherSuite(0) // the suite field of keys is unused here
			info := []byte("cross-check info")
			aad := []byte("cross-check aad")
			msg := []byte("cross-check plaintext")

			t.Run("DeriveKeyPair", func(t *testing.T) {
				for _, n := range []int{0, 1, 32, 64, 100} {
					ikm := make([]byte, n)
					rand.Read(ikm)
					ours, err := p.kem.deriveKeyPair(cs, ikm)
					require.NoError(t, err)
					theirs, err := stdKEM.DeriveKeyPair(ikm)
					require.NoError(t, err, "stdlib DeriveKeyPair(%d bytes)", n)
					if got, want := ours.pk, theirs.PublicKey().Bytes(); !bytes.Equal(got, want) {
						t.Errorf("ikm %d bytes: public key %x, stdlib %x", n, got, want)
					}
					want, err := theirs.Bytes()
					require.NoError(t, err)
					got := ours.sk
					if p.kem.kemID() == kemX25519.id {
						got = clampX25519(got) // stdlib serializes X25519 keys clamped
					}
					if !bytes.Equal(got, want) {
						t.Errorf("ikm %d bytes: private key %x, stdlib %x", n, got, want)
					}
				}
			})

			ours, err := p.kem.generate(cs)
			require.NoError(t, err)
			theirs, err := stdKEM.NewPrivateKey(ours.sk)
			require.NoError(t, err)
			if !bytes.Equal(theirs.PublicKey().Bytes(), ours.pk) {
				t.Fatalf("public keys differ: stdlib %x, ours %x", theirs.PublicKey().Bytes(), ours.pk)
			}

			t.Run("ours-to-stdlib", func(t *testing.T) {
				enc, ct, err := p.seal(cs, ours.pk, info, aad, msg)
				require.NoError(t, err)
				r, err := stdhpke.NewRecipient(enc, theirs, stdKDF, stdAEAD, info)
				require.NoError(t, err)
				pt, err := r.Open(aad, ct)
				require.NoError(t, err, "stdlib Open")
				if !bytes.Equal(pt, msg) {
					t.Errorf("stdlib opened %q", pt)
				}
				enc, secret, err := p.sealExport(cs, ours.pk, info, []byte("exp ctx"), 42)
				require.NoError(t, err)
				r, err = stdhpke.NewRecipient(enc, theirs, stdKDF, stdAEAD, info)
				require.NoError(t, err)
				want, err := r.Export("exp ctx", 42)
				require.NoError(t, err)
				if !bytes.Equal(secret, want) {
					t.Errorf("exported %x, stdlib %x", secret, want)
				}
			})

			t.Run("stdlib-to-ours", func(t *testing.T) {
				enc, s, err := stdhpke.NewSender(theirs.PublicKey(), stdKDF, stdAEAD, info)
				require.NoError(t, err)
				ct, err := s.Seal(aad, msg)
				require.NoError(t, err)
				pt, err := p.open(ours, enc, info, aad, ct)
				require.NoError(t, err, "Open")
				if !bytes.Equal(pt, msg) {
					t.Errorf("opened %q", pt)
				}
				want, err := s.Export("exp ctx", 42)
				require.NoError(t, err)
				got, err := p.openExport(ours, enc, info, []byte("exp ctx"), 42)
				require.NoError(t, err)
				if !bytes.Equal(got, want) {
					t.Errorf("exported %x, stdlib %x", got, want)
				}
			})
		})
	}
}

// TestX25519Backends checks that the two X25519 backends agree on public
// keys and shared secrets.
func TestX25519Backends(t *testing.T) {
	for range 20 {
		ikm := make([]byte, 32)
		rand.Read(ikm)
		a, err := kemX25519Stdlib.deriveKeyPair(0, ikm)
		require.NoError(t, err)
		b, err := kemX25519Circl.deriveKeyPair(0, ikm)
		require.NoError(t, err)
		if !bytes.Equal(a.pk, b.pk) || !bytes.Equal(a.sk, b.sk) {
			t.Fatalf("backends derive different keys")
		}
		e, err := kemX25519Circl.generate(0)
		require.NoError(t, err)
		d1, err1 := kemX25519Stdlib.impl.dh(a, e.pk)
		d2, err2 := kemX25519Circl.impl.dh(b, e.pk)
		if err1 != nil || err2 != nil || !bytes.Equal(d1, d2) {
			t.Fatalf("backends compute different DH: %x %v, %x %v", d1, err1, d2, err2)
		}
	}
	// Low-order points (u = 0 has order 2, u = 1 has order 4) give an
	// all-zero output, which both backends must reject.
	for _, bad := range [][]byte{make([]byte, 32), append([]byte{1}, make([]byte, 31)...)} {
		k, _ := kemX25519Stdlib.generate(0)
		if _, err := kemX25519Stdlib.impl.dh(k, bad); err == nil {
			t.Errorf("stdlib backend accepted low-order point %x", bad)
		}
		if _, err := kemX25519Circl.impl.dh(k, bad); err == nil {
			t.Errorf("circl backend accepted low-order point %x", bad)
		}
	}
}
