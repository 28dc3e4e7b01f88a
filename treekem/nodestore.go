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
// only the few chunks its path touches. Nodes past width are always zero.
type nodeStore struct {
	width  uint32
	chunks []*chunk
}

// at returns node n for reading. The caller must not write through it.
func (s *nodeStore) at(n NodeIndex) *node {
	return &s.chunks[n>>chunkBits].nodes[n&(1<<chunkBits-1)]
}

// mut returns node n for writing, copying its chunk first if shared.
func (s *nodeStore) mut(n NodeIndex) *node {
	c := s.chunks[n>>chunkBits]
	if c.shared.Load() {
		cp := new(chunk)
		cp.nodes = c.nodes
		s.chunks[n>>chunkBits] = cp
		c = cp
	}
	return &c.nodes[n&(1<<chunkBits-1)]
}

// resize sets the width, adding blank nodes or dropping (and zeroing) the
// nodes past the new width.
func (s *nodeStore) resize(w uint32) {
	need := int((uint64(w) + 1<<chunkBits - 1) >> chunkBits)
	if w < s.width {
		for n := w; n < s.width && int(n>>chunkBits) < need; n++ {
			*s.mut(NodeIndex(n)) = node{}
		}
		clear(s.chunks[need:])
		s.chunks = s.chunks[:need]
	}
	for len(s.chunks) < need {
		s.chunks = append(s.chunks, new(chunk))
	}
	s.width = w
}

// clone returns a store sharing every chunk with s. It writes nothing but
// the chunks' atomic shared flags, so clones may be taken concurrently.
func (s *nodeStore) clone() nodeStore {
	for _, c := range s.chunks {
		if !c.shared.Load() {
			c.shared.Store(true)
		}
	}
	return nodeStore{width: s.width, chunks: append([]*chunk(nil), s.chunks...)}
}
