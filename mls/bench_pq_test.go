package mls

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/microchat/e2ee/hpke"
)

// The post-quantum suites benchmarked next to suite 1, with a short name
// for the benchmark path, and their sizes (10,000 members would take
// minutes to build on a small machine for these suites).
var (
	benchPQSuites = []struct {
		name string
		def  SuiteDefinition
	}{
		{"x25519-ed25519", SuiteDefinition{}}, // suite 0x0001, the baseline
		{"xwing-ed25519", hpke.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519},
		{"mlkem768-mldsa65", hpke.MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65},
		{"mlkem1024-mldsa87", hpke.MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87},
	}
	benchPQSizes = []int{2, 100, 1000}
)

type benchPQKey struct {
	cs CipherSuite
	n  int
}

var benchPQGroups sync.Map // benchPQKey -> func() (*benchGroup, error)

func getBenchGroupSuite(b *testing.B, cs CipherSuite, n int) *benchGroup {
	b.Helper()
	f, _ := benchPQGroups.LoadOrStore(benchPQKey{cs, n}, sync.OnceValues(func() (*benchGroup, error) { return newBenchGroupSuite(cs, n) }))
	g, err := f.(func() (*benchGroup, error))()
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// BenchmarkGroupPQ runs the operations of BenchmarkGroup on post-quantum
// suites and, as the baseline, on suite 0x0001, as
// BenchmarkGroupPQ/<suite>/<op>/members=<n> (and the suite's primitives as
// BenchmarkGroupPQ/<suite>/primitive/<name>):
//
//	go test -run XXX -bench 'BenchmarkGroupPQ/xwing-ed25519/(primitive|commit)/' ./mls
//
// The x-target metric compares each operation with the suite's own
// primitives (see benchTarget); the bytes metric is the encoded size of
// what the operation sends: the commit, the Welcome (join), the commit and
// Welcome (add), the PrivateMessage (protect). The cpu-ms metric is the
// process CPU time of one operation (all goroutines, measured with
// getrusage over a few extra runs after the benchmark), which unlike the
// wall time hardly changes when other jobs load the machine.
func BenchmarkGroupPQ(b *testing.B) {
	for _, s := range benchPQSuites {
		cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
		if s.def != (SuiteDefinition{}) {
			cs = pqSuite(b, s.def)
		}
		b.Run(s.name, func(b *testing.B) {
			b.Run("primitive", func(b *testing.B) { benchmarkPrimitivesSuite(b, cs) })
			b.Run("primitive-cpu", func(b *testing.B) { benchmarkPrimitivesCPU(b, cs) })
			ops := []struct {
				name string
				f    func(*testing.B, *benchGroup)
			}{
				{"commit", benchmarkCommit},
				{"process", benchmarkProcess},
				{"join", benchmarkJoin},
				{"add", benchmarkAdd},
				{"protect", benchmarkProtect},
				{"unprotect", benchmarkUnprotect},
			}
			for _, op := range ops {
				b.Run(op.name, func(b *testing.B) {
					for _, n := range benchPQSizes {
						b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
							bg := getBenchGroupSuite(b, cs, n)
							op.f(b, bg)
							reportTargetSuite(b, cs, op.name, n)
							reportBytes(b, bg, op.name)
							reportCPU(b, bg, op.name)
						})
					}
				})
			}
		})
	}
}

// reportBytes reports the encoded size of what op sends.
func reportBytes(b *testing.B, bg *benchGroup, op string) {
	size := 0
	switch op {
	case "commit":
		pc, err := bg.committer.Commit(&CommitOptions{ForcePath: true})
		if err != nil {
			b.Fatal(err)
		}
		data, err := pc.Commit.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	case "join":
		size = len(bg.welcome)
	case "add":
		pc, err := bg.committer.Commit(&CommitOptions{Add: []*KeyPackage{bg.addKP.KeyPackage}})
		if err != nil {
			b.Fatal(err)
		}
		c, err := pc.Commit.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		w, err := pc.Welcome.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		size = len(c) + len(w)
	case "protect":
		msg, err := bg.committer.EncryptApplication(benchMessage, nil)
		if err != nil {
			b.Fatal(err)
		}
		data, err := msg.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	default:
		return
	}
	b.ReportMetric(float64(size), "bytes")
}

// reportCPU reports the process CPU time of op, measured over a few more
// runs of it after the benchmark proper.
func reportCPU(b *testing.B, bg *benchGroup, op string) {
	runs := 4
	if op == "protect" || op == "unprotect" {
		return // microseconds: below what the wall time already tells
	}
	if cpuTime() == 0 {
		return // no getrusage here
	}
	total := time.Duration(0)
	for range runs {
		var data []byte
		var err error
		if op == "process" {
			if data, err = bg.commit(bg.committer); err != nil {
				b.Fatal(err)
			}
		}
		start := cpuTime()
		switch op {
		case "commit":
			var pc *PendingCommit
			if pc, err = bg.committer.Commit(&CommitOptions{ForcePath: true}); err == nil {
				_, err = pc.Commit.Bytes()
			}
		case "process":
			err = bg.process(bg.receiver, data)
		case "join":
			var msg *MLSMessage
			if msg, err = ParseMessage(bg.welcome); err == nil {
				_, err = Join(msg, bg.joinKP, nil, nil)
			}
		case "add":
			var pc *PendingCommit
			if pc, err = bg.committer.Commit(&CommitOptions{Add: []*KeyPackage{bg.addKP.KeyPackage}}); err == nil {
				if _, err = pc.Commit.Bytes(); err == nil {
					_, err = pc.Welcome.Bytes()
				}
			}
		}
		total += cpuTime() - start
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(runs), "cpu-ms")
}

// benchmarkPrimitivesCPU measures the primitives of benchPrimitivesSuite
// like benchmarkPrimitivesSuite and reports their process CPU time per call
// as the cpu-us metric.
func benchmarkPrimitivesCPU(b *testing.B, cs CipherSuite) {
	prims, err := benchPrimitivesSuite(cs)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range prims {
		b.Run(p.name, func(b *testing.B) {
			start := cpuTime()
			for b.Loop() {
				if err := p.f(); err != nil {
					b.Fatal(err)
				}
			}
			if start != 0 {
				b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N)/1000, "cpu-us")
			}
		})
	}
}
