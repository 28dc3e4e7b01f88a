package hpke

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	circlhpke "github.com/cloudflare/circl/hpke"
)

// TestCirclCrossCheck cross-checks DHKEM(X448), which crypto/hpke lacks,
// against circl's HPKE with every KDF and AEAD. circl's DeriveKeyPair only
// accepts a seed of exactly Nsk bytes, so that is the length compared.
func TestCirclCrossCheck(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		for _, a := range []aeadID{aeadAES128GCM, aeadAES256GCM, aeadChaCha20Poly1305} {
			p := newParams("test", h, a, kemX448, sigEd448)
			t.Run(fmt.Sprintf("X448/kdf=%d/aead=%d", p.kdfID, a), func(t *testing.T) {
				t.Parallel()
				suite := circlhpke.NewSuite(circlhpke.KEM(p.kem.kemID()), circlhpke.KDF(p.kdfID), circlhpke.AEAD(p.aead))
				scheme := circlhpke.KEM(p.kem.kemID()).Scheme()
				ikm := make([]byte, p.kem.(*kem).nSk)
				rand.Read(ikm)
				ours, err := p.kem.deriveKeyPair(0, ikm)
				require.NoError(t, err)
				cpk, csk := scheme.DeriveKeyPair(ikm)
				cpkb, _ := cpk.MarshalBinary()
				cskb, _ := csk.MarshalBinary()
				if !bytes.Equal(ours.pk, cpkb) || !bytes.Equal(ours.sk, cskb) {
					t.Fatalf("DeriveKeyPair differs from circl: %x/%x vs %x/%x", ours.sk, ours.pk, cskb, cpkb)
				}
				info, aad, msg := []byte("info"), []byte("aad"), []byte("plaintext")

				// Ours to circl.
				enc, ct, err := p.seal(0, ours.pk, info, aad, msg)
				require.NoError(t, err)
				r, err := suite.NewReceiver(csk, info)
				require.NoError(t, err)
				o, err := r.Setup(enc)
				require.NoError(t, err)
				if pt, err := o.Open(ct, aad); err != nil || !bytes.Equal(pt, msg) {
					t.Fatalf("circl Open: %q, %v", pt, err)
				}

				// circl to ours.
				s, err := suite.NewSender(cpk, info)
				require.NoError(t, err)
				enc, sealer, err := s.Setup(rand.Reader)
				require.NoError(t, err)
				ct, err = sealer.Seal(msg, aad)
				require.NoError(t, err)
				if pt, err := p.open(ours, enc, info, aad, ct); err != nil || !bytes.Equal(pt, msg) {
					t.Fatalf("Open: %q, %v", pt, err)
				}
				got, err := p.openExport(ours, enc, info, []byte("ctx"), 77)
				require.NoError(t, err)
				if want := sealer.Export([]byte("ctx"), 77); !bytes.Equal(got, want) {
					t.Errorf("Export %x, circl %x", got, want)
				}
			})
		}
	}
}
