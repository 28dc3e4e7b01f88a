package treekem

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/microchat/e2ee/internal/treemath"
)

// This file holds the whole-tree work a joiner does once per received tree
// (RFC 9420, Section 12.4.3.1), done in bulk: building the indexes in one
// pass and hashing subtrees on several goroutines.

// indexAll builds the indexes of a tree whose indexes are empty, as
// indexNode on every node in order would, but writing each map once
// instead of folding a growing change set into it again and again. For a
// big tree the encryption key index is built on a second goroutine.
func (t *Tree) indexAll() {
	// The maps are sized from the nodes present, not the width, so that
	// a sparse tree costs memory in proportion to what it holds.
	nonBlank, leaves := 0, 0
	for i := uint32(0); i < t.nodes.width; i++ {
		if t.nodes.isNil(NodeIndex(i)) {
			i |= 1<<chunkBits - 1 // skip the rest of a nil chunk
			continue
		}
		if nd := t.nodes.at(NodeIndex(i)); !nd.blank() {
			nonBlank++
			if nd.leaf != nil {
				leaves++
			}
		}
	}
	var enc map[string]NodeIndex
	indexEnc := func() {
		enc = make(map[string]NodeIndex, nonBlank)
		for i := range t.nodes.width {
			n := NodeIndex(i)
			if k := t.nodes.at(n).encryptionKey(); k != nil {
				if _, ok := enc[string(k)]; !ok {
					enc[string(k)] = n
				}
			}
		}
	}
	var wg sync.WaitGroup
	if t.nodes.width >= 1<<11 && runtime.GOMAXPROCS(0) > 1 {
		wg.Go(indexEnc)
	} else {
		indexEnc()
	}
	sig := make(map[string]LeafIndex, leaves)
	ident := make(map[string][]LeafIndex, leaves)
	for i := 0; i < int(t.nodes.width); i += 2 {
		l := t.nodes.at(NodeIndex(i)).leaf
		if l == nil {
			continue
		}
		li := LeafIndex(i / 2)
		if _, ok := sig[string(l.SignatureKey)]; !ok {
			sig[string(l.SignatureKey)] = li
		}
		ik := l.Credential.identityKey()
		ident[ik] = append(ident[ik], li) // in increasing order
		t.idx.members++
		t.idx.credUsed[l.Credential.Type]++
		forEachDistinct(l.Capabilities.Credentials, func(c CredentialType) { t.idx.credSupported.add(c, 1) })
	}
	for k, v := range ident {
		ident[k] = v[:len(v):len(v)] // appending later must copy
	}
	t.idx.lastPlus1 = 0
	for i := int(t.nodes.width) - 1; i >= 0; i-- {
		if !t.nodes.at(NodeIndex(i)).blank() {
			t.idx.lastPlus1 = uint32(i) + 1
			break
		}
	}
	wg.Wait()
	t.idx.enc = cowMap[string, NodeIndex]{base: enc}
	t.idx.sig = cowMap[string, LeafIndex]{base: sig}
	t.idx.ident = cowMap[string, []LeafIndex]{base: ident}
}

// blankSubtree reports whether every node of the subtree rooted at n is
// blank, from the index of the highest non-blank node: it lets resolve
// and hasNonBlank skip the blank right end of a tree whose member count is
// not a power of two in O(1) instead of visiting its every node, which
// would make commits O(n).
func (t *Tree) blankSubtree(n NodeIndex) bool {
	lo := uint64(n) - (uint64(1)<<treemath.Level(n.tm()) - 1)
	return lo >= uint64(t.idx.lastPlus1)
}

// unindexLast keeps idx.lastPlus1 right when node n, still holding its old
// value, is about to change: if n is the highest non-blank node, the next
// lower non-blank node becomes the highest (indexNode raises it again if
// n stays non-blank). The scan stops at the first non-blank node below n.
func (t *Tree) unindexLast(n NodeIndex) {
	if uint32(n)+1 != t.idx.lastPlus1 {
		return
	}
	t.idx.lastPlus1 = 0
	for m := int(n) - 1; m >= 0; m-- {
		if !t.nodes.at(NodeIndex(m)).blank() {
			t.idx.lastPlus1 = uint32(m) + 1
			return
		}
	}
}

// parallelHashLevel is the level of the subtrees fillHashes hashes
// concurrently. A subtree of level 6 or more spans whole chunks of the node
// store (its nodes and the one node after it, which is an ancestor), so
// goroutines working on different subtrees never write the same chunk.
const parallelHashLevel = 8

// fillHashes computes the missing tree hashes of the subtrees at
// parallelHashLevel on up to GOMAXPROCS goroutines. Small trees are left
// to nodeHash.
func (t *Tree) fillHashes() {
	workers := runtime.GOMAXPROCS(0)
	leaves := t.LeafCount()
	if workers < 2 || leaves < 4<<parallelHashLevel {
		return
	}
	roots := make([]NodeIndex, 0, leaves>>parallelHashLevel)
	for x := uint32(1)<<parallelHashLevel - 1; x < t.nodes.width; x += 2 << parallelHashLevel {
		if t.nodes.at(NodeIndex(x)).hash == nil {
			roots = append(roots, NodeIndex(x))
		}
	}
	if len(roots) < 2 {
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(roots)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(roots) {
					return
				}
				t.nodeHash(roots[i])
			}
		})
	}
	wg.Wait()
}
