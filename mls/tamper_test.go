package mls

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTamperedMessages flips one bit in every byte of valid messages, and
// truncates them, and checks that each result is rejected with a matchable
// error and leaves the group unchanged; then that the untouched message is
// still accepted (so nothing was consumed by the forgeries).
func TestTamperedMessages(t *testing.T) {
	g, seeds := buildFuzzGroup(t)
	for i, seed := range seeds {
		before := snapshot(g)
		for pos := range seed {
			bad := append([]byte(nil), seed...)
			bad[pos] ^= 1 << (pos % 8)
			checkRejected(t, g, bad, before, "seed %d bit flip at byte %d", i, pos)
		}
		for _, n := range []int{0, 1, 4, len(seed) / 2, len(seed) - 1} {
			checkRejected(t, g, seed[:n], before, "seed %d truncated to %d", i, n)
		}
	}
	// The genuine messages still go through: forgeries consumed nothing.
	// (Only the first four are for carol's epoch and independent.)
	for i, seed := range seeds[:3] {
		m, err := ParseMessage(seed)
		require.NoError(t, err)
		if _, err := g.Process(m); err != nil {
			t.Fatalf("genuine seed %d rejected after the forgeries: %v", i, err)
		}
	}
	// Replaying the application message fails: its key is used.
	m, _ := ParseMessage(seeds[0])
	before := snapshot(g)
	if _, err := g.Process(m); !errors.Is(err, ErrKeyUsed) {
		t.Fatalf("replayed application message: %v", err)
	}
	if !snapshot(g).equal(before) {
		t.Fatal("replay changed the group")
	}
}

func checkRejected(t *testing.T, g *Group, data []byte, before groupSnapshot, format string, args ...any) {
	t.Helper()
	m, err := ParseMessage(data)
	if err == nil {
		var res *Processed
		res, err = g.Process(m)
		if err == nil {
			t.Fatalf(format+": accepted (%v)", append(args, res.ContentType)...)
		}
	}
	if !knownError(err) {
		t.Fatalf(format+": error outside the known set: %v", append(args, err)...)
	}
	if !snapshot(g).equal(before) {
		t.Fatalf(format+": the group changed", args...)
	}
}

// TestWrongEpochAndGroup checks the epoch and group checks of Process.
func TestWrongEpochAndGroup(t *testing.T) {
	g, seeds := buildFuzzGroup(t)
	for _, seed := range seeds {
		m, err := ParseMessage(seed)
		require.NoError(t, err)
		before := snapshot(g)
		future := *m
		switch {
		case m.PublicMessage != nil:
			pm := *m.PublicMessage
			pm.Content.Epoch++
			future.PublicMessage = &pm
		case m.PrivateMessage != nil:
			pm := *m.PrivateMessage
			pm.Epoch++
			future.PrivateMessage = &pm
		}
		if _, err := g.Process(&future); !errors.Is(err, ErrWrongEpoch) || !errors.Is(err, ErrFutureEpoch) {
			t.Fatalf("future epoch: %v", err)
		}
		other := *m
		switch {
		case m.PublicMessage != nil:
			pm := *m.PublicMessage
			pm.Content.GroupID = []byte("another group")
			other.PublicMessage = &pm
		case m.PrivateMessage != nil:
			pm := *m.PrivateMessage
			pm.GroupID = []byte("another group")
			other.PrivateMessage = &pm
		}
		if _, err := g.Process(&other); !errors.Is(err, ErrWrongGroup) {
			t.Fatalf("other group: %v", err)
		}
		if !snapshot(g).equal(before) {
			t.Fatal("the group changed")
		}
	}
}
