// Command vectors checks and generates MLS interoperability test vectors
// (RFC 9420) with the e2ee library, for use in CI.
//
//	go run github.com/microchat/e2ee/examples/vectors verify DIR
//	go run github.com/microchat/e2ee/examples/vectors generate [-out DIR] [-seed N] [-types a,b]
//
// verify runs every case of every vector file in DIR (the official files of
// github.com/mlswg/mls-implementations/test-vectors, or generated ones),
// prints per file how many cases passed and why the others failed, and
// exits with status 1 if any case failed or no vector file was found.
//
// generate writes one file per vector type (all 16, or those named by
// -types) in the official JSON format, with cases for all seven cipher
// suites. Every input the generator chooses comes from -seed; fields made
// with the process's cryptographic randomness (HPKE encapsulations, ECDSA
// signatures, fresh key pairs, reuse guards) differ from run to run, because
// only a test binary can fix that randomness (testing/cryptotest). The
// repository's testdata/vectors are written by
//
//	go test ./testvectors -run TestGenerateReproducible -args -update
//
// which fixes it, so regenerating them shows no diff.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/microchat/e2ee/testvectors"
)

// DefaultSeed is the seed of the repository's testdata/vectors.
const DefaultSeed = 9420

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vectors:", err)
		if errors.Is(err, errFailed) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

// errFailed means some vector case failed.
var errFailed = errors.New("some vector cases failed")

const usage = `usage:
  vectors verify DIR
  vectors generate [-out DIR] [-seed N] [-types a,b,...]`

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "verify":
		fs := flag.NewFlagSet("verify", flag.ContinueOnError)
		quiet := fs.Bool("q", false, "print only the per-file counts")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New(usage)
		}
		return verify(fs.Arg(0), *quiet, out)
	case "generate":
		fs := flag.NewFlagSet("generate", flag.ContinueOnError)
		dir := fs.String("out", "vectors", "directory to write the files to")
		seed := fs.Uint64("seed", DefaultSeed, "seed of the generated vectors")
		only := fs.String("types", "", "comma-separated vector types to generate (default all 16)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return errors.New(usage)
		}
		types := testvectors.Types()
		if *only != "" {
			types = strings.Split(*only, ",")
		}
		return generate(*dir, *seed, types, out)
	}
	return errors.New(usage)
}

// verify checks every vector file in dir, running cases on all CPUs.
func verify(dir string, quiet bool, out io.Writer) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	files, total, failed := 0, 0, 0
	for _, e := range entries {
		typ := testvectors.TypeOf(e.Name())
		if e.IsDir() || typ == "" {
			continue
		}
		files++
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		cases, err := testvectors.Cases(typ, data)
		if err != nil {
			fmt.Fprintf(out, "%-36s FAILED: %v\n", e.Name(), err)
			failed++
			continue
		}
		errs := verifyAll(cases)
		bad := 0
		for _, err := range errs {
			if err != nil {
				bad++
			}
		}
		total += len(cases)
		failed += bad
		fmt.Fprintf(out, "%-36s %4d passed %4d failed\n", e.Name(), len(cases)-bad, bad)
		if !quiet {
			for i, err := range errs {
				if err != nil {
					fmt.Fprintf(out, "    case %d: %v\n", cases[i].Index, err)
				}
			}
		}
	}
	if files == 0 {
		return fmt.Errorf("no vector files (%s.json, ...) in %s", testvectors.Types()[0], dir)
	}
	fmt.Fprintf(out, "%d files, %d cases: %d passed, %d failed\n", files, total, total-failed, failed)
	if failed > 0 {
		return errFailed
	}
	return nil
}

// verifyAll verifies the cases concurrently and returns their errors in
// order.
func verifyAll(cases []testvectors.Case) []error {
	errs := make([]error, len(cases))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				errs[i] = cases[i].Verify()
			}
		})
	}
	for i := range cases {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// generate writes the files of the given types to dir.
func generate(dir string, seed uint64, types []string, out io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, typ := range types {
		data, err := testvectors.Generate(typ, seed)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, typ+".json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %s (%d bytes)\n", path, len(data))
	}
	return nil
}
