package keyschedule

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
)

func TestSecretTreeState(t *testing.T) {
	errorsSeen := 0
	for _, n := range []uint32{1, 3, 8, 13} {
		tree, _ := newTestTree(t, n, &Config{OutOfOrderTolerance: 5, MaxForwardDistance: 50})
		twin, _ := newTestTree(t, n, &Config{OutOfOrderTolerance: 5, MaxForwardDistance: 50})
		step := func(leaf uint32, typ RatchetType, g uint32) {
			t.Helper()
			a, errA := tree.Key(leaf, typ, g)
			b, errB := twin.Key(leaf, typ, g)
			for _, sentinel := range []error{ErrKeyConsumed, ErrTooFarAhead} {
				if errors.Is(errA, sentinel) != errors.Is(errB, sentinel) {
					t.Fatalf("n=%d leaf %d %v %d: %v vs restored %v", n, leaf, typ, g, errA, errB)
				}
			}
			if errA != nil {
				errorsSeen++
			}
			if (errA == nil) != (errB == nil) || !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Nonce, b.Nonce) {
				t.Fatalf("n=%d leaf %d %v %d: restored tree differs (%v, %v)", n, leaf, typ, g, errA, errB)
			}
		}
		roundTrip := func() {
			t.Helper()
			b := tree.Bytes()
			restored, err := ParseSecretTree(b)
			require.NoError(t, err, "n=%d: ParseSecretTree", n)
			require.Equal(t, b, restored.Bytes(), "n=")
			twin.Erase()
			twin = restored
		}
		roundTrip()
		for i, op := range []struct {
			leaf uint32
			typ  RatchetType
			g    uint32
		}{
			{0, Application, 0}, {n - 1, Handshake, 3}, {n / 2, Application, 10}, {n / 2, Application, 7},
			{n / 2, Application, 7}, {n / 2, Application, 2}, {0, Handshake, 60}, {n - 1, Handshake, 1},
			{n / 2, Application, 11}, {n - 1, Application, 49},
		} {
			step(op.leaf, op.typ, op.g)
			if i%2 == 1 {
				roundTrip()
			}
		}
		for leaf := range n {
			step(leaf, Handshake, 0)
		}
		roundTrip()
		step(n/2, Application, 9)
	}
	if errorsSeen < 8 {
		t.Errorf("only %d refused fetches: the test no longer covers consumed keys", errorsSeen)
	}
}

func TestParseSecretTreeRejects(t *testing.T) {
	cs := testSuite
	nh := cs.HashSize()
	state := func(leafCount uint32, nodes map[uint32][]byte, senders []uint32, tweak func(*cryptobyte.Builder)) []byte {
		return wire.MustMarshal(func(b *cryptobyte.Builder) {
			b.AddUint8(1)
			b.AddUint16(uint16(cs))
			b.AddUint32(leafCount)
			b.AddUint32(10)
			b.AddUint32(2)
			wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
				for x := range uint32(64) {
					if s, ok := nodes[x]; ok {
						b.AddUint32(x)
						wire.AddVarintBytes(b, s)
					}
				}
			})
			wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
				for _, l := range senders {
					b.AddUint32(l)
					for range 2 {
						b.AddUint32(0)
						wire.AddOptional(b, true, func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, make([]byte, nh)) })
						wire.AddVarintPrefixed(b, func(*cryptobyte.Builder) {})
					}
				}
			})
			if tweak != nil {
				tweak(b)
			}
		})
	}
	sec := make([]byte, nh)
	good := state(4, map[uint32][]byte{1: sec, 6: sec}, []uint32{2}, nil)
	if _, err := ParseSecretTree(good); err != nil {
		t.Fatalf("valid state rejected: %v", err)
	}
	for name, b := range map[string][]byte{
		"trailing":        append(bytes.Clone(good), 0),
		"version":         append([]byte{2}, good[1:]...),
		"overlap":         state(4, map[uint32][]byte{1: sec, 3: sec}, nil, nil),
		"leaf-and-node":   state(4, map[uint32][]byte{1: sec, 5: sec}, []uint32{2}, nil),
		"gap":             state(4, map[uint32][]byte{1: sec}, []uint32{2}, nil),
		"short-secret":    state(4, map[uint32][]byte{3: sec[:5]}, nil, nil),
		"node-outside":    state(4, map[uint32][]byte{3: sec, 7: sec}, nil, nil),
		"leaf-outside":    state(4, map[uint32][]byte{3: sec}, []uint32{4}, nil),
		"no-leaves":       state(0, nil, nil, nil),
		"empty":           nil,
		"truncated":       good[:len(good)-3],
		"unknown-version": {1, 0, 0x99},
	} {
		if tr, err := ParseSecretTree(b); !errors.Is(err, ErrMalformed) && !errors.Is(err, hpke.ErrUnsupportedCipherSuite) || tr != nil {
			t.Errorf("%s: ParseSecretTree = %v, %v", name, tr, err)
		}
	}
}
