package keyschedule

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/vectortest"
)

// addVectorSeeds adds the GroupContexts of the official key-schedule vectors
// to f's corpus when the vectors are present.
func addVectorSeeds(f *testing.F) {
	if vectortest.Dir() == "" {
		return
	}
	for _, v := range vectortest.Load[keyScheduleVector](f, "key-schedule.json") {
		for _, e := range v.Epochs {
			f.Add([]byte(e.GroupContext))
		}
	}
}

func FuzzParseGroupContext(f *testing.F) {
	addVectorSeeds(f)
	f.Add((&GroupContext{Version: MLS10, CipherSuite: 3, GroupID: []byte("g"),
		Extensions: []Extension{{Type: 2, Data: []byte{1, 2}}}}).Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		gc, err := ParseGroupContext(b)
		if err != nil {
			if gc != nil {
				t.Fatal("non-nil GroupContext with an error")
			}
			require.ErrorIs(t, err, ErrMalformed, "unexpected error")
			return
		}
		require.Equal(t, b, gc.Bytes(), "re-marshal differs")
	})
}

func FuzzParsePreSharedKeyID(f *testing.F) {
	for _, id := range []PreSharedKeyID{
		{PSKType: PSKTypeExternal, PSKID: []byte("id"), PSKNonce: []byte("nonce")},
		{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageReInit, PSKGroupID: []byte("g"), PSKEpoch: 1, PSKNonce: []byte{}},
	} {
		b, err := id.Bytes()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParsePreSharedKeyID(b)
		if err != nil {
			if id != nil {
				t.Fatal("non-nil PreSharedKeyID with an error")
			}
			require.ErrorIs(t, err, ErrMalformed, "unexpected error")
			return
		}
		again, err := id.Bytes()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-marshal differs (%v):\n%x\n%x", err, again, b)
		}
	})
}

// TestFuzzSeedsPresent checks that the committed seed corpora exist where
// the fuzz targets load them from.
func TestFuzzSeedsPresent(t *testing.T) {
	for _, target := range []string{"FuzzParseGroupContext", "FuzzParsePreSharedKeyID", "FuzzParseSecretTree", "FuzzParseEpochSecrets"} {
		files, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no committed seeds (%v)", target, err)
		}
	}
}

func FuzzParseSecretTree(f *testing.F) {
	tree, err := NewSecretTree(testSuite, testSecret(testSuite, 1), 5, &Config{OutOfOrderTolerance: 3})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tree.Bytes())
	tree.Key(3, Application, 6)
	tree.Key(0, Handshake, 1)
	f.Add(tree.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := ParseSecretTree(b)
		if err != nil {
			if tree != nil {
				t.Fatal("non-nil SecretTree with an error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, hpke.ErrUnsupportedCipherSuite) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		require.Equal(t, b, tree.Bytes(), "re-marshal differs")
		// A restored tree must serve every leaf without panicking.
		for leaf := range min(tree.LeafCount(), 64) {
			tree.Key(leaf, Application, 1)
		}
	})
}

func FuzzParseEpochSecrets(f *testing.F) {
	s := (&EpochSecret{suite: testSuite, secret: testSecret(testSuite, 1)}).Derive()
	f.Add(s.Bytes())
	s.EraseInit()
	f.Add(s.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseEpochSecrets(b)
		if err != nil {
			if s != nil {
				t.Fatal("non-nil EpochSecrets with an error")
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, hpke.ErrUnsupportedCipherSuite) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		require.Equal(t, b, s.Bytes(), "re-marshal differs")
	})
}
