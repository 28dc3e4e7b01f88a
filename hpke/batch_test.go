package hpke

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLabeledEncryptor checks that LabeledEncryptor's ciphertexts open with
// DecryptWithLabel of the same label and context, and with no other, on
// every suite, the post-quantum ones (whose HPKE runs in crypto/hpke) too.
func TestLabeledEncryptor(t *testing.T) {
	for _, cs := range testSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			context := bytes.Repeat([]byte("encrypted group info"), 100)
			enc, err := cs.NewLabeledEncryptor("Welcome", context)
			require.NoError(t, err)
			for i := range 3 {
				k, err := cs.GenerateKeyPair()
				require.NoError(t, err)
				msg := []byte{byte(i), 'g', 's'}
				kem, ct, err := enc.Encrypt(k.PublicKey(), msg)
				require.NoError(t, err)
				pt, err := cs.DecryptWithLabel(k, "Welcome", context, kem, ct)
				require.NoError(t, err)
				require.Equal(t, msg, pt)
				_, err = cs.DecryptWithLabel(k, "Welcome", context[1:], kem, ct)
				require.ErrorIs(t, err, ErrDecryption)
			}
		})
	}
}
