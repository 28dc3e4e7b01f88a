// Package vectortest finds and loads the official MLS interoperability test
// vectors for tests.
//
// The vectors are not part of this repository. Tests look for them in the
// directory named by $MLS_TEST_VECTORS, else in ../shared/mls-test-vectors
// relative to the module root. When neither exists, tests that need them are
// skipped with a message saying how to get them, unless MLS_REQUIRE_VECTORS=1,
// when they fail instead.
package vectortest

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// HexBytes is a byte slice that decodes from a hex string in JSON.
type HexBytes []byte

// UnmarshalText hex-decodes text into h.
func (h *HexBytes) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return err
	}
	*h = out
	return nil
}

// MarshalText hex-encodes h.
func (h HexBytes) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h)), nil
}

const howTo = "official MLS test vectors not found: set MLS_TEST_VECTORS to a folder holding " +
	"the JSON files of github.com/mlswg/mls-implementations/test-vectors, or place them in " +
	"../shared/mls-test-vectors beside the module root; set MLS_REQUIRE_VECTORS=1 to fail instead of skipping"

// Dir returns the directory holding the official vectors, or "" if none is
// found.
func Dir() string {
	if d := os.Getenv("MLS_TEST_VECTORS"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
		return ""
	}
	root := moduleRoot()
	if root == "" {
		return ""
	}
	d := filepath.Join(root, "..", "shared", "mls-test-vectors")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

// moduleRoot walks up from the working directory (a package directory under
// go test) to the directory holding go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			// The examples module lives inside the root module; keep
			// walking to the outermost module root of this checkout.
			if _, err := os.Stat(filepath.Join(dir, "..", "go.mod")); err != nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Required reports whether MLS_REQUIRE_VECTORS=1 is set.
func Required() bool { return os.Getenv("MLS_REQUIRE_VECTORS") == "1" }

// Path returns the path of the named vector file, skipping or failing t
// as described in the package documentation when the vectors are absent.
func Path(t testing.TB, name string) string {
	t.Helper()
	d := Dir()
	if d == "" {
		if Required() {
			t.Fatalf("MLS_REQUIRE_VECTORS=1: %s", howTo)
		}
		t.Skip(howTo)
	}
	p := filepath.Join(d, name)
	if _, err := os.Stat(p); err != nil {
		if Required() {
			t.Fatalf("MLS_REQUIRE_VECTORS=1: %s: %v", name, err)
		}
		t.Skipf("%s: %v (%s)", name, err, howTo)
	}
	return p
}

// Load reads the named vector file (for example "tree-math.json") and
// decodes it as a JSON array of T.
func Load[T any](t testing.TB, name string) []T {
	t.Helper()
	data, err := os.ReadFile(Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("decoding %s: %v", name, err)
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no cases", name)
	}
	return out
}

// SharedPath returns the path of the named file in a folder of vectors
// other than the MLS ones: the folder named by $envVar if set, else
// ../shared/<dir> relative to the module root. Like [Path], it skips t when
// the file is absent, or fails it when MLS_REQUIRE_VECTORS=1.
func SharedPath(t testing.TB, envVar, dir, name string) string {
	t.Helper()
	howTo := "test vectors not found: set " + envVar + " to a folder holding " + name +
		", or place it in ../shared/" + dir + " beside the module root; set MLS_REQUIRE_VECTORS=1 to fail instead of skipping"
	d := os.Getenv(envVar)
	if d == "" {
		if root := moduleRoot(); root != "" {
			d = filepath.Join(root, "..", "shared", dir)
		}
	}
	p := filepath.Join(d, name)
	if st, err := os.Stat(p); d == "" || err != nil || st.IsDir() {
		if Required() {
			t.Fatalf("MLS_REQUIRE_VECTORS=1: %s", howTo)
		}
		t.Skip(howTo)
	}
	return p
}

// Run runs every case of the vector file <stem>.json as the parallel
// subtest <stem>/<case index> of t, calling test with the decoded case.
func Run[T any](t *testing.T, stem string, test func(*testing.T, *T)) {
	t.Helper()
	t.Run(stem, func(t *testing.T) {
		for i, v := range Load[T](t, stem+".json") {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				test(t, &v)
			})
		}
	})
}

// GeneratedDir returns the folder of the vectors this implementation
// generated, testdata/vectors at the module root (see package testvectors).
func GeneratedDir() string { return filepath.Join(moduleRoot(), "testdata", "vectors") }

// RunGenerated runs every case of the generated vector file <stem>.json in
// [GeneratedDir] as the parallel subtest <stem>/<case index> of t, calling
// test with the decoded case. The files are part of the repository, so a
// missing or empty file fails t.
func RunGenerated[T any](t *testing.T, stem string, test func(*testing.T, *T)) {
	t.Helper()
	t.Run(stem, func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(GeneratedDir(), stem+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var vs []T
		if err := json.Unmarshal(data, &vs); err != nil {
			t.Fatalf("decoding %s.json: %v", stem, err)
		}
		if len(vs) == 0 {
			t.Fatalf("%s.json holds no cases", stem)
		}
		for i, v := range vs {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				test(t, &v)
			})
		}
	})
}
