// Package wire implements the TLS presentation language as used by MLS,
// with the variable-size vector headers of RFC 9420, Section 2.1.2, on top
// of golang.org/x/crypto/cryptobyte.
//
// Readers follow the cryptobyte convention and report failure with a false
// result, so that whole structures can be decoded with a chain of && and
// checked once. [Parse] turns such a chain into an error that callers can
// match with [errors.Is]. Every reader checks a length against the bytes
// that remain before it allocates anything, so a short hostile input can
// never cause a large allocation.
package wire

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/errs"
)

// MaxVarint is the largest value a variable-size vector header can encode
// (RFC 9420, Section 2.1.2): 2^30 - 1.
const MaxVarint = 1<<30 - 1

// Errors returned by the decoders in this package. Each of them matches
// [ErrMalformed] with [errors.Is].
var (
	// ErrMalformed is matched by every decoding error of this package.
	ErrMalformed = errs.Malformed("wire: malformed encoding")
	// ErrTruncated means the input ended before the structure did.
	ErrTruncated = &malformedError{"wire: input truncated"}
	// ErrNonMinimal means a varint was not encoded in its shortest form.
	ErrNonMinimal = &malformedError{"wire: varint is not minimally encoded"}
	// ErrReservedPrefix means a varint used the reserved 0b11 prefix.
	ErrReservedPrefix = &malformedError{"wire: varint uses the reserved 0b11 prefix"}
	// ErrTrailingData means bytes remained after a whole structure was parsed.
	ErrTrailingData = &malformedError{"wire: trailing data after structure"}
	// ErrInvalidOptional means an optional<T> presence byte was neither 0 nor 1.
	ErrInvalidOptional = &malformedError{"wire: optional presence byte is neither 0 nor 1"}
)

type malformedError struct{ msg string }

func (e *malformedError) Error() string        { return e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformed }

// DecodeVarint decodes one variable-size vector header from the start of b,
// returning the value and the number of bytes it occupied. It accepts only
// minimal encodings and rejects the reserved 0b11 prefix (RFC 9420, Section
// 2.1.2).
func DecodeVarint(b []byte) (v uint32, n int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	switch b[0] >> 6 {
	case 0:
		return uint32(b[0]), 1, nil
	case 1:
		if len(b) < 2 {
			return 0, 0, ErrTruncated
		}
		v = uint32(b[0]&0x3f)<<8 | uint32(b[1])
		if v < 1<<6 {
			return 0, 0, ErrNonMinimal
		}
		return v, 2, nil
	case 2:
		if len(b) < 4 {
			return 0, 0, ErrTruncated
		}
		v = uint32(b[0]&0x3f)<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if v < 1<<14 {
			return 0, 0, ErrNonMinimal
		}
		return v, 4, nil
	default:
		return 0, 0, ErrReservedPrefix
	}
}

// AppendVarint appends the minimal variable-size vector header for v to b.
// It panics if v is larger than [MaxVarint]; callers check lengths first.
func AppendVarint(b []byte, v uint32) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(v>>8)|0x40, byte(v))
	case v <= MaxVarint:
		return append(b, byte(v>>24)|0x80, byte(v>>16), byte(v>>8), byte(v))
	default:
		panic("wire: varint value out of range")
	}
}

// AddVarint adds the minimal encoding of v to b. A value above [MaxVarint]
// sets an error on the builder.
func AddVarint(b *cryptobyte.Builder, v uint32) {
	if v > MaxVarint {
		b.SetError(fmt.Errorf("wire: varint value %d out of range", v))
		return
	}
	var buf [4]byte
	b.AddBytes(AppendVarint(buf[:0], v))
}

// ReadVarint reads a minimally encoded varint from s.
func ReadVarint(s *cryptobyte.String, out *uint32) bool {
	v, n, err := DecodeVarint(*s)
	if err != nil {
		return false
	}
	*out = v
	s.Skip(n)
	return true
}

// AddVarintPrefixed adds the bytes written by f, preceded by their length as
// a varint. The body is built in a scratch builder because the size of the
// prefix depends on it; scratch builders and their buffers are pooled (and
// cleared after use, as they may hold secrets), so that nested vectors
// cost no allocation per level and per element.
func AddVarintPrefixed(b *cryptobyte.Builder, f func(*cryptobyte.Builder)) {
	sb := getScratch()
	f(&sb.b)
	body, err := sb.b.Bytes()
	if err != nil {
		b.SetError(err)
	} else {
		AddVarintBytes(b, body)
	}
	sb.release(body)
}

// maxScratch is the largest scratch buffer kept for reuse.
const maxScratch = 4 << 20

// scratchBuilder is a pooled builder with the buffer it last grew.
type scratchBuilder struct {
	b   cryptobyte.Builder
	buf []byte
}

var scratch = sync.Pool{New: func() any { return new(scratchBuilder) }}

func getScratch() *scratchBuilder {
	sb := scratch.Get().(*scratchBuilder)
	sb.b = *cryptobyte.NewBuilder(sb.buf[:0])
	return sb
}

// release clears the bytes the builder wrote, which may be secret, and
// returns it to the pool unless its buffer grew too large to keep. body is
// the builder's output, or nil if it failed.
func (sb *scratchBuilder) release(body []byte) {
	clear(body)
	sb.b = cryptobyte.Builder{}
	if body == nil {
		// A failed builder's output is lost; start afresh.
		sb.buf = nil
	} else if cap(body) > maxScratch {
		return
	} else {
		sb.buf = body[:0]
	}
	scratch.Put(sb)
}

// ReadVarintPrefixed reads a varint length and that many bytes from s into
// out, without copying.
func ReadVarintPrefixed(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n uint32
	if !ReadVarint(s, &n) {
		return false
	}
	return s.ReadBytes((*[]byte)(out), int(n))
}

// AddVarintBytes adds v preceded by its length as a varint.
func AddVarintBytes(b *cryptobyte.Builder, v []byte) {
	if len(v) > MaxVarint {
		b.SetError(errors.New("wire: vector too long"))
		return
	}
	AddVarint(b, uint32(len(v)))
	b.AddBytes(v)
}

// ReadVarintBytes reads a varint-prefixed byte vector from s and stores a
// copy of it in out. An empty vector is stored as a non-nil empty slice.
func ReadVarintBytes(s *cryptobyte.String, out *[]byte) bool {
	var body cryptobyte.String
	if !ReadVarintPrefixed(s, &body) {
		return false
	}
	*out = append(make([]byte, 0, len(body)), body...)
	return true
}

// ReadVector reads a varint-prefixed vector whose elements are decoded one
// after another by f until the vector's bytes are used up. f must consume at
// least one byte on success; a call that consumes none fails the read, so a
// hostile length can never make this loop spin.
func ReadVector(s *cryptobyte.String, f func(*cryptobyte.String) bool) bool {
	var body cryptobyte.String
	if !ReadVarintPrefixed(s, &body) {
		return false
	}
	for !body.Empty() {
		before := len(body)
		if !f(&body) || len(body) == before {
			return false
		}
	}
	return true
}

// SkipVarintBytes skips a varint-prefixed byte vector.
func SkipVarintBytes(s *cryptobyte.String) bool {
	var body cryptobyte.String
	return ReadVarintPrefixed(s, &body)
}

// SkipVarintBytesN skips n varint-prefixed byte vectors in a row.
func SkipVarintBytesN(s *cryptobyte.String, n int) bool {
	for range n {
		if !SkipVarintBytes(s) {
			return false
		}
	}
	return true
}

// ReadVarintSlice reads a varint-prefixed byte vector from s into out
// without copying it. out's capacity is its length, so appending to it
// never writes into s. Use it on a buffer the result may keep, such as a
// private copy of a whole vector read with [ReadVarintBytes], so that many
// small elements share one allocation instead of one each.
func ReadVarintSlice(s *cryptobyte.String, out *[]byte) bool {
	var body cryptobyte.String
	if !ReadVarintPrefixed(s, &body) {
		return false
	}
	*out = body[:len(body):len(body)]
	return true
}

// CountVector returns the number of elements of the varint-prefixed
// vector at the start of s, each read by skip, without consuming s. skip
// must not allocate; like [ReadVector] it fails on an element of no bytes.
// Decoders count a vector before they allocate its slice, so that the
// slice is exactly as long as what the input holds.
func CountVector(s cryptobyte.String, skip func(*cryptobyte.String) bool) (int, bool) {
	var body cryptobyte.String
	if !ReadVarintPrefixed(&s, &body) {
		return 0, false
	}
	return CountElements(body, skip)
}

// CountElements is [CountVector] on a vector's body, without its length
// prefix: every byte of body must belong to an element.
func CountElements(body cryptobyte.String, skip func(*cryptobyte.String) bool) (int, bool) {
	n := 0
	for !body.Empty() {
		before := len(body)
		if !skip(&body) || len(body) == before {
			return 0, false
		}
		n++
	}
	return n, true
}

// ReadSharedList is [ReadList] for elements that hold byte strings: it
// copies the vector's bytes once, and read decodes each element from that
// copy, keeping its fields pointing into it (see [ReadVarintSlice]). So a
// vector of many small elements costs one copy of its bytes and one slice,
// not an allocation per field.
func ReadSharedList[T any](s *cryptobyte.String, out *[]T, skip func(*cryptobyte.String) bool, read func(*cryptobyte.String, *T) bool) bool {
	var body cryptobyte.String
	if !ReadVarintPrefixed(s, &body) {
		return false
	}
	n, ok := CountElements(body, skip)
	if !ok {
		return false
	}
	if n == 0 {
		*out = nil
		return true
	}
	buf := cryptobyte.String(append(make([]byte, 0, len(body)), body...))
	v := make([]T, n)
	for i := range v {
		if !read(&buf, &v[i]) {
			return false
		}
	}
	if !buf.Empty() {
		return false
	}
	*out = v
	return true
}

// ReadList reads a varint-prefixed vector of T from s into out: it counts
// the elements with skip (see [CountVector]), allocates the slice once,
// and decodes each element in place with read. An empty vector is stored
// as nil.
func ReadList[T any](s *cryptobyte.String, out *[]T, skip func(*cryptobyte.String) bool, read func(*cryptobyte.String, *T) bool) bool {
	n, ok := CountVector(*s, skip)
	if !ok {
		return false
	}
	var v []T
	if n > 0 {
		v = make([]T, n)
	}
	i := 0
	if !ReadVector(s, func(s *cryptobyte.String) bool {
		if i == n || !read(s, &v[i]) {
			return false
		}
		i++
		return true
	}) || i != n {
		return false
	}
	*out = v
	return true
}

// AddOptional adds an optional<T> (RFC 9420, Section 2.1.3): a presence
// byte, followed by the value written by f when present is true.
func AddOptional(b *cryptobyte.Builder, present bool, f func(*cryptobyte.Builder)) {
	if !present {
		b.AddUint8(0)
		return
	}
	b.AddUint8(1)
	f(b)
}

// ReadOptional reads the presence byte of an optional<T>. It fails on any
// value other than 0 or 1.
func ReadOptional(s *cryptobyte.String, present *bool) bool {
	var v uint8
	if !s.ReadUint8(&v) || v > 1 {
		return false
	}
	*present = v == 1
	return true
}

// ReadBool reads a TLS bool: one byte that must be 0 or 1.
func ReadBool(s *cryptobyte.String, out *bool) bool {
	return ReadOptional(s, out)
}

// AddBool adds a TLS bool.
func AddBool(b *cryptobyte.Builder, v bool) {
	if v {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

// Parse decodes a whole structure from data with f and requires that f
// consumes every byte. When f fails, Parse re-scans nothing; it reports the
// failure as an error matching [ErrMalformed], and trailing bytes as
// [ErrTrailingData].
func Parse(data []byte, f func(*cryptobyte.String) bool) error {
	s := cryptobyte.String(data)
	if !f(&s) {
		return ErrMalformed
	}
	if !s.Empty() {
		return ErrTrailingData
	}
	return nil
}

// Marshal runs f on a fresh builder and returns the bytes, or the first error
// f set on the builder.
//
// The encoding is built in a pooled scratch buffer, which is cleared after
// use, and copied out once at its exact size, so that the builder's growth
// costs no allocation.
func Marshal(f func(*cryptobyte.Builder)) ([]byte, error) {
	var out []byte
	err := Use(f, func(b []byte) { out = append(make([]byte, 0, len(b)), b...) })
	return out, err
}

// Use runs f on a pooled scratch builder and passes the bytes it wrote to
// use, or returns the first error f set. The bytes are valid only during
// use and cleared afterwards: it is for encodings that are hashed, signed
// or verified and then dropped, which then cost no allocation.
func Use(f func(*cryptobyte.Builder), use func([]byte)) error {
	sb := getScratch()
	f(&sb.b)
	body, err := sb.b.Bytes()
	if err != nil {
		sb.release(nil)
		return err
	}
	use(body)
	sb.release(body)
	return nil
}

// MustMarshal is like [Marshal] but panics on error. It is for structures
// whose fields were validated when they were built, where an error means an
// internal invariant broke.
func MustMarshal(f func(*cryptobyte.Builder)) []byte {
	out, err := Marshal(f)
	if err != nil {
		panic(err)
	}
	return out
}
