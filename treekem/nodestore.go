package treekem

import "sync/atomic"

// chunkBits sets the number of nodes per chunk of a nodeStore.
const chunkBits = 7

type chunk struct {
	// shared is set once the chunk is held by more than one tree; from then
	// on nobody writes it in place. It is atomic so that cloning, which
	// sets it, only reads the tree being cloned.
	shared atomic.Bool
	nodes  [1 << chunkBits]node
}

// nodeStore is the node array of a tree, kept in fixed-size chunks that
// clones share until one of them writes to a chunk, which it then copies.
// A clone therefore costs a copy of the chunk pointers, and a commit copies
// only the few chunks its path touches. A chunk whose nodes are all blank
// may be nil, so that a sparse tree costs memory in proportion to its
// non-blank nodes rather than its width. Nodes past width are always zero.
type nodeStore struct {
	width  uint32
	chunks []*chunk
}

// blankNode is what at returns for the nodes of a nil chunk. Nobody writes
// it.
var blankNode node

// at returns node n for reading. The caller must not write through it.
func (s *nodeStore) at(n NodeIndex) *node {
	c := s.chunks[n>>chunkBits]
	if c == nil {
		return &blankNode
	}
	return &c.nodes[n&(1<<chunkBits-1)]
}

// mut returns node n for writing, allocating its chunk if nil and copying
// it first if shared.
func (s *nodeStore) mut(n NodeIndex) *node {
	c := s.chunks[n>>chunkBits]
	switch {
	case c == nil:
		c = new(chunk)
		s.chunks[n>>chunkBits] = c
	case c.shared.Load():
		cp := new(chunk)
		cp.nodes = c.nodes
		s.chunks[n>>chunkBits] = cp
		c = cp
	}
	return &c.nodes[n&(1<<chunkBits-1)]
}

// isNil reports whether node n lies in a nil chunk: it is blank and has no
// cached hash.
func (s *nodeStore) isNil(n NodeIndex) bool { return s.chunks[n>>chunkBits] == nil }

// rangeNil reports whether every node from lo to hi, inclusive, lies in a
// nil chunk.
func (s *nodeStore) rangeNil(lo, hi NodeIndex) bool {
	for c := lo >> chunkBits; c <= hi>>chunkBits; c++ {
		if s.chunks[c] != nil {
			return false
		}
	}
	return true
}

// resize sets the width, adding blank nodes (nil chunks) or dropping (and
// zeroing) the nodes past the new width.
func (s *nodeStore) resize(w uint32) {
	need := int((uint64(w) + 1<<chunkBits - 1) >> chunkBits)
	if w < s.width {
		for n := w; n < s.width && int(n>>chunkBits) < need; n++ {
			if s.chunks[n>>chunkBits] != nil {
				*s.mut(NodeIndex(n)) = node{}
			}
		}
		clear(s.chunks[need:])
		s.chunks = s.chunks[:need]
	}
	if need > len(s.chunks) {
		s.chunks = append(s.chunks, make([]*chunk, need-len(s.chunks))...)
	}
	s.width = w
}

// clone returns a store sharing every chunk with s. It writes nothing but
// the chunks' atomic shared flags, so clones may be taken concurrently.
func (s *nodeStore) clone() nodeStore {
	for _, c := range s.chunks {
		if c != nil && !c.shared.Load() {
			c.shared.Store(true)
		}
	}
	return nodeStore{width: s.width, chunks: append([]*chunk(nil), s.chunks...)}
}
