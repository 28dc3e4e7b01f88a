package mls

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

// BenchmarkPersist measures the record-based persistence on groups built
// with bigGroup (DefaultPastEpochs past epochs, every parent node set), in
// a MemoryStore, named BenchmarkPersist/<op>/members=<n>:
//   - save-message: SaveGroup after decrypting one application message
//     (B-written-first/op for a sender's first message of the epoch, which
//     writes its secret-tree path; x-decrypt is the save's time as a
//     multiple of decrypting the 1 KiB message, measured in the same loop);
//   - save-commit: SaveGroup after merging a path commit;
//   - load: OpenGroup, a cold start to a usable group;
//   - load-decrypt: OpenGroup and decrypting one application message of a
//     member far from this one in the tree.
//
// Each reports B-written/op (keys and values written to the store),
// B/member (the size of the stored group per member) and cpu-ns/op, the
// process's CPU time per operation (for load, load-decrypt and
// save-commit): on a loaded machine ns/op measures the load more than the
// code.
func BenchmarkPersist(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		var g *Group
		far, err := benchSuite.GenerateSignatureKey()
		if err != nil {
			b.Fatal(err)
		}
		get := func(b *testing.B) *Group {
			if g == nil {
				g = bigGroupWith(b, n, far)
				farSigner = far
			}
			return g
		}
		b.Run(fmt.Sprintf("save-message/members=%d", n), func(b *testing.B) { benchSaveMessage(b, get(b), n) })
		b.Run(fmt.Sprintf("save-commit/members=%d", n), func(b *testing.B) { benchSaveCommit(b, get(b), n) })
		b.Run(fmt.Sprintf("load/members=%d", n), func(b *testing.B) { benchLoad(b, get(b), n, false) })
		b.Run(fmt.Sprintf("load-decrypt/members=%d", n), func(b *testing.B) { benchLoad(b, get(b), n, true) })
	}
}

// farSigner holds the signature key of the last leaf of the group being
// benchmarked (see bigGroupWith).
var farSigner *hpke.SignaturePrivateKey

// storedCopy saves a copy of g (through its whole-state export) to a new
// counting store and opens it.
func storedCopy(b *testing.B, g *Group) (*countingStore, *Group) {
	state, err := g.MarshalState()
	if err != nil {
		b.Fatal(err)
	}
	cp, err := LoadGroup(state, nil)
	if err != nil {
		b.Fatal(err)
	}
	s := &countingStore{MemoryStore: NewMemoryStore()}
	if err := SaveGroup(context.Background(), s, cp, nil); err != nil {
		b.Fatal(err)
	}
	return s, cp
}

func reportSize(b *testing.B, s *countingStore, gid []byte, n int) {
	sg, err := s.LoadGroupRecords(context.Background(), gid)
	if err != nil {
		b.Fatal(err)
	}
	size := 0
	for _, r := range sg.Records {
		size += len(r.Key) + len(r.Value)
	}
	b.ReportMetric(float64(size)/float64(n), "B/member")
}

// senderCopy returns a copy of g that sends as the member at leaf l: its
// signature key is set in l's leaf of every copy made from the returned
// state. It is enough to produce messages g verifies.
func senderCopies(b *testing.B, g *Group, leaves []LeafIndex) []*Group {
	out := make([]*Group, len(leaves))
	for i, l := range leaves {
		state, err := g.MarshalState()
		if err != nil {
			b.Fatal(err)
		}
		cp, err := LoadGroup(state, nil)
		if err != nil {
			b.Fatal(err)
		}
		cp.state.priv = treekem.NewPrivateKeys(g.cs, l, nil)
		if l != 0 {
			cp.sigPriv = farSigner
		}
		out[i] = cp
	}
	return out
}

func benchSaveMessage(b *testing.B, g *Group, n int) {
	ctx := context.Background()
	s, r := storedCopy(b, g)
	// Messages from the last leaf: the first one of the epoch writes the
	// secret tree's path (B-written-first/op), each next one the
	// sender's ratchet entry (B-written/op).
	sender := senderCopies(b, g, []LeafIndex{LeafIndex(n - 1)})[0]
	plain := make([]byte, 1024)
	msgs := make([]*MLSMessage, 0, 1)
	next := func() *MLSMessage {
		m, err := sender.EncryptApplication(plain, nil)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	// The first message from a sender writes its path: measure it once.
	if _, err := r.Process(next()); err != nil {
		b.Fatal(err)
	}
	s.written = 0
	if err := SaveGroup(ctx, s, r, nil); err != nil {
		b.Fatal(err)
	}
	first := s.written
	_ = msgs
	written := 0
	var decrypt time.Duration
	for b.Loop() {
		b.StopTimer()
		m := next()
		start := time.Now()
		if _, err := r.Process(m); err != nil {
			b.Fatal(err)
		}
		decrypt += time.Since(start)
		s.written = 0
		b.StartTimer()
		if err := SaveGroup(ctx, s, r, nil); err != nil {
			b.Fatal(err)
		}
		written = s.written
	}
	b.ReportMetric(float64(written), "B-written/op")
	b.ReportMetric(float64(first), "B-written-first/op")
	// The save's cost as a multiple of decrypting the 1 KiB message.
	b.ReportMetric(float64(b.Elapsed())/float64(decrypt), "x-decrypt")
}

func benchSaveCommit(b *testing.B, g *Group, n int) {
	ctx := context.Background()
	s, r := storedCopy(b, g)
	written, iters := 0, 0
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		pc, err := r.Commit(&CommitOptions{ForcePath: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.MergePendingCommit(pc); err != nil {
			b.Fatal(err)
		}
		s.written = 0
		b.StartTimer()
		c0 := processCPU()
		if err := SaveGroup(ctx, s, r, nil); err != nil {
			b.Fatal(err)
		}
		cpu += processCPU() - c0
		iters++
		written = s.written
	}
	b.ReportMetric(float64(written), "B-written/op")
	b.ReportMetric(float64(cpu)/float64(iters), "cpu-ns/op")
	reportSize(b, s, r.GroupID(), n)
}

func benchLoad(b *testing.B, g *Group, n int, decrypt bool) {
	ctx := context.Background()
	s, r := storedCopy(b, g)
	// A message from the member at the last leaf, far from leaf 0: its
	// leaf is in another chunk than this member's.
	sender := senderCopies(b, r, []LeafIndex{LeafIndex(n - 1)})[0]
	var msg *MLSMessage
	if decrypt {
		var err error
		if msg, err = sender.EncryptApplication(make([]byte, 1024), nil); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	cpu0, iters := processCPU(), 0
	for b.Loop() {
		iters++
		g, err := OpenGroup(ctx, s, r.GroupID(), nil)
		if err != nil {
			b.Fatal(err)
		}
		if decrypt {
			if _, err := g.Process(msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(iters), "cpu-ns/op")
	b.ReportMetric(0, "B-written/op")
	reportSize(b, s, r.GroupID(), n)
}
