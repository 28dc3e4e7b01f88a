package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGenerateAndVerify(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	require.NoError(t, run([]string{"generate", "-out", dir, "-types", "tree-math,psk_secret,welcome"}, &out))
	require.Contains(t, out.String(), "welcome.json")

	out.Reset()
	require.NoError(t, run([]string{"verify", dir}, &out))
	require.Contains(t, out.String(), "3 files, 39 cases: 39 passed, 0 failed")

	// A changed psk_secret fails its case, and verify says which and why.
	path := filepath.Join(dir, "psk_secret.json")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	i := bytes.Index(data, []byte(`"psk_secret": "`)) + len(`"psk_secret": "`)
	if data[i] == '0' {
		data[i] = '1'
	} else {
		data[i] = '0'
	}
	require.NoError(t, os.WriteFile(path, data, 0o644))
	out.Reset()
	err = run([]string{"verify", dir}, &out)
	require.True(t, errors.Is(err, errFailed), "err = %v", err)
	require.Contains(t, out.String(), "psk_secret.json                        20 passed    1 failed")
	require.Contains(t, out.String(), "case 0: psk_secret = ")
}

func TestVerifyNothing(t *testing.T) {
	var out bytes.Buffer
	require.Error(t, run([]string{"verify", t.TempDir()}, &out))
	require.Error(t, run([]string{"verify"}, &out))
	require.Error(t, run([]string{"frobnicate"}, &out))
	require.Error(t, run([]string{"generate", "-types", "no-such-type", "-out", t.TempDir()}, &out))
}

// TestVerifyRepositoryVectors runs the command on the repository's
// generated vectors.
func TestVerifyRepositoryVectors(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"verify", "-q", "../../testdata/vectors"}, &out), out.String())
	require.Contains(t, out.String(), "16 files, ")
}

// TestVerifyOfficialVectors runs the command on a copy of the cheaper
// official files (the root module's testvectors tests run all 785 cases
// through the same code).
func TestVerifyOfficialVectors(t *testing.T) {
	src := os.Getenv("MLS_TEST_VECTORS")
	if src == "" {
		src = "../../../shared/mls-test-vectors"
	}
	if _, err := os.Stat(filepath.Join(src, "tree-math.json")); err != nil {
		if os.Getenv("MLS_REQUIRE_VECTORS") == "1" {
			t.Fatalf("MLS_REQUIRE_VECTORS=1 and no official vectors in %s", src)
		}
		t.Skipf("official vectors not found in %s (set MLS_TEST_VECTORS)", src)
	}
	dir := t.TempDir()
	for _, name := range []string{"tree-math.json", "deserialization.json", "crypto-basics.json", "key-schedule.json", "secret-tree.json", "welcome.json"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	var out bytes.Buffer
	require.NoError(t, run([]string{"verify", dir}, &out), out.String())
	require.True(t, strings.HasSuffix(out.String(), "6 files, 66 cases: 66 passed, 0 failed\n"), out.String())
}
