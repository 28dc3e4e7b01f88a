// Package testvectors checks and generates the MLS interoperability test
// vectors of the MLS working group (github.com/mlswg/mls-implementations,
// folder test-vectors) against this module's implementation of RFC 9420.
//
// There are 16 vector types, one JSON file each, named after the file's
// stem (see [Types]): "crypto-basics", "tree-math", "welcome" and so on.
// [Verify] runs every case of one file and says which pass and why the
// others fail; [VerifyDir] does so for a folder. [Generate] writes a file
// of any type, in the official JSON format, from this implementation, for
// all seven cipher suites of RFC 9420.
//
// This package is what the repository's own tests use: the official files
// and the generated ones under the module's testdata/vectors folder are
// checked by the same code (see testvectors_test.go).
//
// # Determinism
//
// Generate draws every input it chooses (secrets, group IDs, key seeds,
// sizes, the sequence of operations) from a ChaCha8 stream keyed by its
// seed. Some outputs come from randomness inside the cryptography and the
// protocol code instead (HPKE encapsulation, ECDSA signatures, fresh key
// pairs of KeyPackages and UpdatePaths, reuse guards of PrivateMessages),
// which reads crypto/rand. Those fields are the same from run to run only
// when the process's cryptographic randomness is fixed too, as
// testing/cryptotest.SetGlobalRandom does in a test; the repository's
// testdata/vectors files are written that way, so regenerating them shows
// no diff.
//
// The generated key material and lifetimes are for tests only: the clock
// of every generated group is [VectorTime], and all secrets are printed.
package testvectors

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/microchat/e2ee/hpke"
)

// VectorTime is the clock of every group, KeyPackage and LeafNode that
// [Generate] makes, and the time at which lifetimes are checked when
// verifying. It lies within the lifetimes of the official vectors' leaves,
// which were generated in 2023.
var VectorTime = time.Date(2023, time.June, 1, 0, 0, 0, 0, time.UTC)

// ErrUnknownType is returned for a vector type that is not one of [Types].
var ErrUnknownType = errors.New("testvectors: unknown vector type")

// A Result is the verdict on one case of a vector file.
type Result struct {
	// Index is the position of the case in the file's JSON array.
	Index int
	// Err is nil when the case passes; otherwise it lists every check
	// that failed.
	Err error
}

// A Case is one case of a vector file, ready to be verified.
type Case struct {
	// Index is the position of the case in the file's JSON array.
	Index  int
	verify func(*checker)
}

// Verify runs every check of the case and returns nil if all pass, or an
// error listing the failures. A panic in the code under test is reported
// as a failure. Cases are independent and may be verified concurrently.
func (c Case) Verify() error { return runChecks(c.verify) }

// FileResult is the verdict on one file of [VerifyDir].
type FileResult struct {
	// Name is the file name, for example "treekem.json".
	Name string
	// Results holds one entry per case; it is empty when Err is set.
	Results []Result
	// Err is set when the file could not be read or decoded.
	Err error
}

// Passed counts the cases that passed.
func (f *FileResult) Passed() int {
	n := 0
	for _, r := range f.Results {
		if r.Err == nil {
			n++
		}
	}
	return n
}

// vectorType knows how to decode, check and generate one vector type.
type vectorType struct {
	cases    func(data []byte) ([]Case, error)
	generate func(g *generator) (any, error)
}

// register builds the vectorType of T from its check and its generator.
func register[T any](check func(*checker, *T), gen func(*generator) ([]T, error)) vectorType {
	return vectorType{
		cases: func(data []byte) ([]Case, error) {
			var vs []T
			if err := json.Unmarshal(data, &vs); err != nil {
				return nil, err
			}
			out := make([]Case, len(vs))
			for i := range vs {
				v := &vs[i]
				out[i] = Case{Index: i, verify: func(c *checker) { check(c, v) }}
			}
			return out, nil
		},
		generate: func(g *generator) (any, error) { return gen(g) },
	}
}

var types = map[string]vectorType{
	"crypto-basics":                  register(checkCryptoBasics, genCryptoBasics),
	"deserialization":                register(checkDeserialization, genDeserialization),
	"key-schedule":                   register(checkKeySchedule, genKeySchedule),
	"message-protection":             register(checkMessageProtection, genMessageProtection),
	"messages":                       register(checkMessages, genMessages),
	"passive-client-handling-commit": register(checkPassiveClient, genPassiveHandlingCommit),
	"passive-client-random":          register(checkPassiveClient, genPassiveRandom),
	"passive-client-welcome":         register(checkPassiveClient, genPassiveWelcome),
	"psk_secret":                     register(checkPSKSecret, genPSKSecret),
	"secret-tree":                    register(checkSecretTree, genSecretTree),
	"transcript-hashes":              register(checkTranscriptHashes, genTranscriptHashes),
	"tree-math":                      register(checkTreeMath, genTreeMath),
	"tree-operations":                register(checkTreeOperations, genTreeOperations),
	"tree-validation":                register(checkTreeValidation, genTreeValidation),
	"treekem":                        register(checkTreeKEM, genTreeKEM),
	"welcome":                        register(checkWelcome, genWelcome),
}

// Types returns the stems of the 16 vector file types, sorted: the file
// of type "treekem" is named "treekem.json".
func Types() []string {
	out := make([]string, 0, len(types))
	for k := range types {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TypeOf returns the vector type of a file name such as
// "/tmp/v/treekem.json", or "" if the name is not one of [Types].
func TypeOf(name string) string {
	stem := strings.TrimSuffix(filepath.Base(name), ".json")
	if _, ok := types[stem]; !ok || !strings.HasSuffix(name, ".json") {
		return ""
	}
	return stem
}

// Cases decodes data, the JSON array of a vector file of type typ, into
// its cases.
func Cases(typ string, data []byte) ([]Case, error) {
	t, ok := types[typ]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, typ)
	}
	cs, err := t.cases(data)
	if err != nil {
		return nil, fmt.Errorf("testvectors: decoding %s: %w", typ, err)
	}
	return cs, nil
}

// Verify decodes data, the JSON array of a vector file of type typ, and
// verifies every case in order. The error is for a file that cannot be
// decoded; failing cases are reported in the results.
func Verify(typ string, data []byte) ([]Result, error) {
	cs, err := Cases(typ, data)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(cs))
	for i, c := range cs {
		out[i] = Result{Index: c.Index, Err: c.Verify()}
	}
	return out, nil
}

// VerifyDir verifies every file of dir whose name is one of [Types] with
// ".json" appended, in name order. Other files are ignored. It fails only
// when dir cannot be read.
func VerifyDir(dir string) ([]FileResult, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []FileResult
	for _, e := range entries {
		typ := TypeOf(e.Name())
		if e.IsDir() || typ == "" {
			continue
		}
		fr := FileResult{Name: e.Name()}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			fr.Results, err = Verify(typ, data)
		}
		fr.Err = err
		out = append(out, fr)
	}
	return out, nil
}

// Generate returns a vector file of type typ (see [Types]) made by this
// implementation: a JSON array in the official format, indented, with
// cases for all seven cipher suites where the type has a suite. The
// package documentation says which fields depend on seed alone.
func Generate(typ string, seed uint64) ([]byte, error) {
	t, ok := types[typ]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, typ)
	}
	// Each type gets its own stream, so adding cases to one type does not
	// change the others.
	var key [32]byte
	copy(key[:], typ)
	for i := range 8 {
		key[24+i] = byte(seed >> (8 * i))
	}
	g := &generator{r: rand.NewChaCha8(key)}
	v, err := t.generate(g)
	if err != nil {
		return nil, fmt.Errorf("testvectors: generating %s: %w", typ, err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// hexBytes is a byte slice that is a hex string in JSON.
type hexBytes []byte

func (h *hexBytes) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return err
	}
	*h = out
	return nil
}

// MarshalJSON writes nil as null (the official files' "absent", as for
// a ratchet_tree sent in the Welcome or a path secret a leaf does not
// learn) and anything else as a hex string.
func (h hexBytes) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("null"), nil
	}
	return []byte(`"` + hex.EncodeToString(h) + `"`), nil
}

// checker collects the failures of one case.
type checker struct {
	prefix string
	errs   []string
}

// abort stops a case (or a sub-check) after a failure later checks depend on.
type abort struct{}

func runChecks(f func(*checker)) error {
	c := &checker{}
	func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(abort); !ok {
					c.errs = append(c.errs, fmt.Sprintf("%spanic: %v", c.prefix, r))
				}
			}
		}()
		f(c)
	}()
	if len(c.errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(c.errs, "; "))
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, c.prefix+fmt.Sprintf(format, args...))
}

func (c *checker) fatalf(format string, args ...any) {
	c.errorf(format, args...)
	panic(abort{})
}

// sub runs f with name added to the failure messages; a fatalf in f stops
// only f.
func (c *checker) sub(name string, f func()) (ok bool) {
	old, n := c.prefix, len(c.errs)
	c.prefix = old + name + ": "
	defer func() {
		c.prefix = old
		if r := recover(); r != nil {
			if _, isAbort := r.(abort); !isAbort {
				panic(r)
			}
		}
		ok = len(c.errs) == n
	}()
	f()
	return
}

// must stops the case if err is not nil.
func (c *checker) must(what string, err error) {
	if err != nil {
		c.fatalf("%s: %v", what, err)
	}
}

// equal reports a difference between got and want.
func (c *checker) equal(name string, got, want []byte) bool {
	if !slices.Equal(got, want) {
		c.errorf("%s = %x, want %x", name, got, want)
		return false
	}
	return true
}

// generator is the deterministic source of a generated file's inputs.
type generator struct {
	r *rand.ChaCha8
}

// bytes returns n bytes of the stream.
func (g *generator) bytes(n int) []byte {
	b := make([]byte, n)
	g.r.Read(b)
	return b
}

// intn returns a number in [0, n).
func (g *generator) intn(n int) int { return rand.New(g.r).IntN(n) }

// rfcSuites are the seven cipher suites of RFC 9420, Section 17.1, for
// which every vector type is generated. (The library may support more;
// the official formats and the generated files cover these.)
var rfcSuites = []hpke.CipherSuite{
	hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
	hpke.MLS_128_DHKEMP256_AES128GCM_SHA256_P256,
	hpke.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519,
	hpke.MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448,
	hpke.MLS_256_DHKEMP521_AES256GCM_SHA512_P521,
	hpke.MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448,
	hpke.MLS_256_DHKEMP384_AES256GCM_SHA384_P384,
}
