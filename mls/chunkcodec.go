package mls

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"
)

// Stored tree chunks are compressed with DEFLATE (RFC 1951): leaves of
// one group repeat much (capabilities, credential types, extension lists),
// and chunks hold no secrets, so compressing them reveals nothing. The
// chunk's address is the hash of its uncompressed nodes.
//
//	struct {
//	    uint8 codec;          // 0: none, 1: DEFLATE
//	    opaque nodes[...];    // optional<Node> encodings, to the end
//	} StoredChunk;

const (
	chunkRaw     = 0
	chunkDeflate = 1
	// maxChunkSize bounds what a stored chunk may inflate to.
	maxChunkSize = 1 << 24
)

var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

var inflaters sync.Pool

// packChunk returns the stored form of a chunk's node encodings.
func packChunk(raw []byte) []byte {
	var buf bytes.Buffer
	buf.WriteByte(chunkDeflate)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	w.Write(raw)
	w.Close()
	deflaters.Put(w)
	if buf.Len() >= 1+len(raw) {
		return append([]byte{chunkRaw}, raw...)
	}
	return buf.Bytes()
}

// unpackChunk returns the node encodings of a stored chunk.
func unpackChunk(v []byte) ([]byte, error) {
	if len(v) == 0 {
		return nil, errors.New("empty tree chunk")
	}
	switch v[0] {
	case chunkRaw:
		return v[1:], nil
	case chunkDeflate:
		src := bytes.NewReader(v[1:])
		r, _ := inflaters.Get().(io.ReadCloser)
		if r == nil {
			r = flate.NewReader(src)
		} else if err := r.(flate.Resetter).Reset(src, nil); err != nil {
			return nil, err
		}
		defer inflaters.Put(r)
		out, err := io.ReadAll(io.LimitReader(r, maxChunkSize+1))
		if err != nil {
			return nil, err
		}
		if len(out) > maxChunkSize {
			return nil, errors.New("tree chunk too large")
		}
		return out, nil
	}
	return nil, errors.New("unknown tree chunk codec")
}
