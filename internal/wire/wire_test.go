package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/internal/vectortest"
	"golang.org/x/crypto/cryptobyte"
)

type deserializationVector struct {
	VLBytesHeader vectortest.HexBytes `json:"vlbytes_header"`
	Length        uint32              `json:"length"`
}

func TestVectors(t *testing.T) {
	vectortest.Run(t, "deserialization", testDeserialization)
}

// TestGeneratedVectors checks the vectors of ../../testdata/vectors, which
// package testvectors generates, with the same checks.
func TestGeneratedVectors(t *testing.T) {
	vectortest.RunGenerated(t, "deserialization", testDeserialization)
}

func testDeserialization(t *testing.T, v *deserializationVector) {
	got, n, err := DecodeVarint(v.VLBytesHeader)
	require.NoError(t, err, "DecodeVarint(%x)", v.VLBytesHeader)
	if got != v.Length || n != len(v.VLBytesHeader) {
		t.Fatalf("DecodeVarint(%x) = %d, %d bytes; want %d, %d bytes", v.VLBytesHeader, got, n, v.Length, len(v.VLBytesHeader))
	}
	if enc := AppendVarint(nil, v.Length); !bytes.Equal(enc, v.VLBytesHeader) {
		t.Fatalf("AppendVarint(%d) = %x, want %x", v.Length, enc, v.VLBytesHeader)
	}
	// A vector with that header must claim exactly that many bytes,
	// and be refused when one byte is missing.
	if v.Length < 1<<16 {
		body := make([]byte, v.Length)
		full := append(append([]byte{}, v.VLBytesHeader...), body...)
		var out []byte
		if err := Parse(full, func(s *cryptobyte.String) bool { return ReadVarintBytes(s, &out) }); err != nil || len(out) != int(v.Length) {
			t.Fatalf("ReadVarintBytes: len %d, err %v", len(out), err)
		}
		if err := Parse(full[:len(full)-1], func(s *cryptobyte.String) bool { return ReadVarintBytes(s, &out) }); v.Length > 0 && !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated vector: err = %v, want ErrMalformed", err)
		}
	}
}

func TestDecodeVarintErrors(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{nil, ErrTruncated},
		{[]byte{0x40}, ErrTruncated},
		{[]byte{0x80, 0x00, 0x40}, ErrTruncated},
		{[]byte{0x40, 0x3f}, ErrNonMinimal},
		{[]byte{0x40, 0x00}, ErrNonMinimal},
		{[]byte{0x80, 0x00, 0x3f, 0xff}, ErrNonMinimal},
		{[]byte{0x80, 0x00, 0x00, 0x01}, ErrNonMinimal},
		{[]byte{0xc0, 0, 0, 0, 0, 0, 0, 1}, ErrReservedPrefix},
		{[]byte{0xff}, ErrReservedPrefix},
	} {
		_, _, err := DecodeVarint(tc.in)
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeVarint(%x) = %v, want %v (matching ErrMalformed)", tc.in, err, tc.want)
		}
	}
}

func TestVarintBoundaries(t *testing.T) {
	for _, v := range []uint32{0, 1, 63, 64, 16383, 16384, MaxVarint} {
		enc := AppendVarint(nil, v)
		got, n, err := DecodeVarint(enc)
		if err != nil || got != v || n != len(enc) {
			t.Errorf("round trip %d: got %d, %d, %v", v, got, n, err)
		}
	}
	var b cryptobyte.Builder
	AddVarint(&b, MaxVarint+1)
	if _, err := b.Bytes(); err == nil {
		t.Error("AddVarint(MaxVarint+1) did not fail")
	}
}

func TestOptional(t *testing.T) {
	for _, tc := range []struct {
		in      []byte
		ok      bool
		present bool
	}{
		{[]byte{0}, true, false},
		{[]byte{1}, true, true},
		{[]byte{2}, false, false},
		{[]byte{0xff}, false, false},
		{nil, false, false},
	} {
		var present bool
		s := cryptobyte.String(tc.in)
		if ok := ReadOptional(&s, &present); ok != tc.ok || present != tc.present {
			t.Errorf("ReadOptional(%x) = %v, %v; want %v, %v", tc.in, present, ok, tc.present, tc.ok)
		}
	}
}

func TestParseTrailingData(t *testing.T) {
	var out []byte
	err := Parse([]byte{0x01, 0xaa, 0xbb}, func(s *cryptobyte.String) bool { return ReadVarintBytes(s, &out) })
	if !errors.Is(err, ErrTrailingData) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrTrailingData", err)
	}
}

func TestNoLargeAllocationFromShortInput(t *testing.T) {
	// A header claiming 2^30-1 bytes followed by almost nothing must fail
	// without allocating the claimed length.
	in := []byte{0xbf, 0xff, 0xff, 0xff, 0x00}
	allocs := testing.AllocsPerRun(10, func() {
		var out []byte
		s := cryptobyte.String(in)
		if ReadVarintBytes(&s, &out) {
			t.Fatal("accepted truncated vector")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations for a rejected header", allocs)
	}
}

func TestReadVectorRejectsEmptyStep(t *testing.T) {
	s := cryptobyte.String([]byte{0x02, 0x00, 0x00})
	n := 0
	if ReadVector(&s, func(*cryptobyte.String) bool { n++; return true }) {
		t.Fatal("ReadVector accepted an element decoder that consumed nothing")
	}
	if n != 1 {
		t.Fatalf("element decoder ran %d times, want 1", n)
	}
}

// FuzzVarint checks that DecodeVarint never panics, that every accepted
// encoding is minimal (re-encoding gives the same bytes), and that every
// failure is a known error.
func FuzzVarint(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, err := DecodeVarint(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || v != 0 || n != 0 {
				t.Fatalf("DecodeVarint(%x) = %d, %d, %v", data, v, n, err)
			}
			return
		}
		if enc := AppendVarint(nil, v); !bytes.Equal(enc, data[:n]) {
			t.Fatalf("re-encoding %d gave %x, input was %x", v, enc, data[:n])
		}
	})
}

// FuzzVarintBytes parses a vector of varint-prefixed byte strings, each
// wrapped in an optional<T>, and checks the decode/encode round trip.
func FuzzVarintBytes(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		type item struct {
			present bool
			value   []byte
		}
		var items []item
		err := Parse(data, func(s *cryptobyte.String) bool {
			return ReadVector(s, func(s *cryptobyte.String) bool {
				var it item
				if !ReadOptional(s, &it.present) {
					return false
				}
				if it.present && !ReadVarintBytes(s, &it.value) {
					return false
				}
				items = append(items, it)
				return true
			})
		})
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed, "unknown error")
			return
		}
		enc, err := Marshal(func(b *cryptobyte.Builder) {
			AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
				for _, it := range items {
					AddOptional(b, it.present, func(b *cryptobyte.Builder) { AddVarintBytes(b, it.value) })
				}
			})
		})
		require.NoError(t, err)
		require.Equal(t, data, enc, "re-encoding gave")
	})
}
