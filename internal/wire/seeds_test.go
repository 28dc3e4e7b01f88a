package wire

import (
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds every file under testdata/fuzz/seeds as a seed input, and
// fails if there are none, so that a moved folder cannot silently leave the
// fuzzers unseeded.
func addSeeds(f *testing.F) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz", "seeds", "*"))
	if err != nil {
		f.Fatal(err)
	}
	if len(paths) == 0 {
		f.Fatal("no fuzz seeds found under testdata/fuzz/seeds")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}
