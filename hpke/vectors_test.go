package hpke

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/internal/vectortest"
)

type hexBytes = vectortest.HexBytes

// cryptoBasicsVector is one case of crypto-basics.json.
type cryptoBasicsVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	RefHash     struct {
		Label string   `json:"label"`
		Value hexBytes `json:"value"`
		Out   hexBytes `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  hexBytes `json:"secret"`
		Label   string   `json:"label"`
		Context hexBytes `json:"context"`
		Length  int      `json:"length"`
		Out     hexBytes `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret hexBytes `json:"secret"`
		Label  string   `json:"label"`
		Out    hexBytes `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     hexBytes `json:"secret"`
		Label      string   `json:"label"`
		Generation uint32   `json:"generation"`
		Length     int      `json:"length"`
		Out        hexBytes `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      hexBytes `json:"priv"`
		Pub       hexBytes `json:"pub"`
		Content   hexBytes `json:"content"`
		Label     string   `json:"label"`
		Signature hexBytes `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       hexBytes `json:"priv"`
		Pub        hexBytes `json:"pub"`
		Label      string   `json:"label"`
		Context    hexBytes `json:"context"`
		Plaintext  hexBytes `json:"plaintext"`
		KEMOutput  hexBytes `json:"kem_output"`
		Ciphertext hexBytes `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

func TestVectors(t *testing.T) {
	t.Run("crypto-basics", func(t *testing.T) {
		vs := vectortest.Load[cryptoBasicsVector](t, "crypto-basics.json")
		if len(vs) != 7 {
			t.Errorf("crypto-basics.json has %d cases, want 7", len(vs))
		}
		for i := range vs {
			v := &vs[i]
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				testCryptoBasics(t, v)
			})
		}
	})
}

// TestGeneratedVectors checks the vectors of ../testdata/vectors, which
// package testvectors generates, with the same checks.
func TestGeneratedVectors(t *testing.T) {
	vectortest.RunGenerated(t, "crypto-basics", testCryptoBasics)
}

func testCryptoBasics(t *testing.T, v *cryptoBasicsVector) {
	cs := v.CipherSuite
	if !cs.Supported() {
		t.Fatalf("suite %v not supported", cs)
	}
	t.Run("ref_hash", func(t *testing.T) {
		r := &v.RefHash
		if got := cs.RefHash(r.Label, r.Value); !bytes.Equal(got, r.Out) {
			t.Errorf("RefHash = %x, want %x", got, r.Out)
		}
	})
	t.Run("expand_with_label", func(t *testing.T) {
		e := &v.ExpandWithLabel
		if got := cs.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length); !bytes.Equal(got, e.Out) {
			t.Errorf("ExpandWithLabel = %x, want %x", got, e.Out)
		}
	})
	t.Run("derive_secret", func(t *testing.T) {
		d := &v.DeriveSecret
		if got := cs.DeriveSecret(d.Secret, d.Label); !bytes.Equal(got, d.Out) {
			t.Errorf("DeriveSecret = %x, want %x", got, d.Out)
		}
	})
	t.Run("derive_tree_secret", func(t *testing.T) {
		d := &v.DeriveTreeSecret
		if got := cs.DeriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length); !bytes.Equal(got, d.Out) {
			t.Errorf("DeriveTreeSecret = %x, want %x", got, d.Out)
		}
	})
	t.Run("sign_with_label", func(t *testing.T) {
		s := &v.SignWithLabel
		require.NoError(t, cs.ValidateSignaturePublicKey(s.Pub), "ValidateSignaturePublicKey")
		if err := cs.VerifyWithLabel(s.Pub, s.Label, s.Content, s.Signature); err != nil {
			t.Errorf("VerifyWithLabel(given signature): %v", err)
		}
		k, err := cs.NewSignaturePrivateKey(s.Priv)
		require.NoError(t, err, "NewSignaturePrivateKey")
		if !bytes.Equal(k.PublicKey(), s.Pub) {
			t.Errorf("PublicKey = %x, want %x", k.PublicKey(), s.Pub)
		}
		if !bytes.Equal(k.Bytes(), s.Priv) {
			t.Errorf("Bytes = %x, want %x", k.Bytes(), s.Priv)
		}
		sig, err := cs.SignWithLabel(k, s.Label, s.Content)
		require.NoError(t, err, "SignWithLabel")
		if err := cs.VerifyWithLabel(s.Pub, s.Label, s.Content, sig); err != nil {
			t.Errorf("VerifyWithLabel(fresh signature): %v", err)
		}
		if err := cs.VerifyWithLabel(s.Pub, s.Label+"x", s.Content, s.Signature); !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("VerifyWithLabel(wrong label) = %v, want ErrInvalidSignature", err)
		}
		bad := bytes.Clone(s.Signature)
		bad[len(bad)/2] ^= 0x01
		if err := cs.VerifyWithLabel(s.Pub, s.Label, s.Content, bad); !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("VerifyWithLabel(tampered signature) = %v, want ErrInvalidSignature", err)
		}
	})
	t.Run("encrypt_with_label", func(t *testing.T) {
		e := &v.EncryptWithLabel
		require.NoError(t, cs.ValidatePublicKey(e.Pub), "ValidatePublicKey")
		k, err := cs.NewPrivateKey(e.Priv)
		require.NoError(t, err, "NewPrivateKey")
		if !bytes.Equal(k.PublicKey(), e.Pub) {
			t.Errorf("PublicKey = %x, want %x", k.PublicKey(), e.Pub)
		}
		if !bytes.Equal(k.Bytes(), e.Priv) {
			t.Errorf("Bytes = %x, want %x", k.Bytes(), e.Priv)
		}
		pt, err := cs.DecryptWithLabel(k, e.Label, e.Context, e.KEMOutput, e.Ciphertext)
		require.NoError(t, err, "DecryptWithLabel(given ciphertext)")
		if !bytes.Equal(pt, e.Plaintext) {
			t.Errorf("DecryptWithLabel = %x, want %x", pt, e.Plaintext)
		}
		kemOut, ct, err := cs.EncryptWithLabel(e.Pub, e.Label, e.Context, e.Plaintext)
		require.NoError(t, err, "EncryptWithLabel")
		pt, err = cs.DecryptWithLabel(k, e.Label, e.Context, kemOut, ct)
		require.NoError(t, err, "DecryptWithLabel(fresh ciphertext)")
		if !bytes.Equal(pt, e.Plaintext) {
			t.Errorf("DecryptWithLabel(fresh) = %x, want %x", pt, e.Plaintext)
		}
		bad := bytes.Clone(e.Ciphertext)
		bad[0] ^= 0x80
		if _, err := cs.DecryptWithLabel(k, e.Label, e.Context, e.KEMOutput, bad); !errors.Is(err, ErrDecryption) {
			t.Errorf("DecryptWithLabel(tampered ciphertext) = %v, want ErrDecryption", err)
		}
		if _, err := cs.DecryptWithLabel(k, e.Label, append(bytes.Clone(e.Context), 0), e.KEMOutput, e.Ciphertext); !errors.Is(err, ErrDecryption) {
			t.Errorf("DecryptWithLabel(wrong context) = %v, want ErrDecryption", err)
		}
	})
}
