package testvectors_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/cryptotest"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/microchat/e2ee/testvectors"
)

// Seed is the seed of the committed files in ../testdata/vectors.
const Seed = 9420

var update = flag.Bool("update", false, "rewrite ../testdata/vectors from the generator")

const generatedDir = "../testdata/vectors"

// runFile runs every case of a vector file as a parallel subtest named by
// its index.
func runFile(t *testing.T, typ string, data []byte) {
	t.Helper()
	cases, err := testvectors.Cases(typ, data)
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	for _, c := range cases {
		t.Run(strconv.Itoa(c.Index), func(t *testing.T) {
			t.Parallel()
			if err := c.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOfficialVectors runs this package's verifier on every case of the
// official vectors, as TestOfficialVectors/<file stem>/<index>. (The
// subtest name TestVectors/<file stem>/<index> is kept by the packages
// whose own tests check the same cases with their internals.)
func TestOfficialVectors(t *testing.T) {
	for _, typ := range testvectors.Types() {
		t.Run(typ, func(t *testing.T) {
			data, err := os.ReadFile(vectortest.Path(t, typ+".json"))
			require.NoError(t, err)
			runFile(t, typ, data)
		})
	}
}

// TestGeneratedVectors runs the same verifier on every case of the
// vectors this implementation generated, as
// TestGeneratedVectors/<file stem>/<index>. The files are part of the
// repository, so this never skips.
func TestGeneratedVectors(t *testing.T) {
	for _, typ := range testvectors.Types() {
		t.Run(typ, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(generatedDir, typ+".json"))
			require.NoError(t, err, "run go test ./testvectors -run TestGenerate -update")
			runFile(t, typ, data)
		})
	}
}

// TestGenerateReproducible regenerates every file with the committed seed
// and a fixed cryptographic randomness, and checks the result is
// byte-identical to the committed file; with -update it rewrites them.
func TestGenerateReproducible(t *testing.T) {
	if testing.Short() && !*update {
		t.Skip("regenerating all vectors takes a while")
	}
	for _, typ := range testvectors.Types() {
		t.Run(typ, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, Seed)
			got, err := testvectors.Generate(typ, Seed)
			require.NoError(t, err)
			path := filepath.Join(generatedDir, typ+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
				return
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from a fresh generation: run go test ./testvectors -run TestGenerate -update", path)
			}
		})
	}
}
