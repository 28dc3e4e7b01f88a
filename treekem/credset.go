package treekem

import "sync/atomic"

// Credential types are 16-bit, so a leaf's list of supported types can be
// checked and de-duplicated with a bitmap in time linear in the list,
// however hostile (RFC 9420, Section 7.2 leaves its length open).

// credSet is a set of credential types, one bit per type. At 8 KiB it is
// meant for the stack of one call.
type credSet [1 << 16 / 64]uint64

// add adds t and reports whether it was not in the set yet.
func (s *credSet) add(t CredentialType) bool {
	w, b := t>>6, uint64(1)<<(t&63)
	if s[w]&b != 0 {
		return false
	}
	s[w] |= b
	return true
}

func (s *credSet) has(t CredentialType) bool { return s[t>>6]&(uint64(1)<<(t&63)) != 0 }

// smallList is the length up to which lists are scanned rather than put in
// a credSet, whose clearing costs more than a few comparisons.
const smallList = 16

// forEachDistinct calls f once for every distinct type of v, in order of
// first appearance.
func forEachDistinct(v []CredentialType, f func(CredentialType)) {
	if len(v) <= smallList {
	outer:
		for i, x := range v {
			for _, y := range v[:i] {
				if y == x {
					continue outer
				}
			}
			f(x)
		}
		return
	}
	var seen credSet
	for _, x := range v {
		if seen.add(x) {
			f(x)
		}
	}
}

// credLookup returns a membership test for the types of v that costs O(1)
// per call after O(len(v)) set-up.
func credLookup(v []CredentialType, set *credSet) func(CredentialType) bool {
	if len(v) <= smallList {
		return func(t CredentialType) bool {
			for _, x := range v {
				if x == t {
					return true
				}
			}
			return false
		}
	}
	for _, x := range v {
		set.add(x)
	}
	return set.has
}

// credCounts counts, for every credential type, the leaves that list it.
// It is a two-level array of 256 pages of 256 counters, allocated when
// first written and shared between a tree and its clones until one of them
// writes to it, so a clone costs a copy of the page pointers, and a leaf
// listing every type costs about its own size.
type credCounts struct {
	pages [256]*credPage
}

type credPage struct {
	shared atomic.Bool
	n      [256]int32
}

func (c *credCounts) get(t CredentialType) int {
	if p := c.pages[t>>8]; p != nil {
		return int(p.n[t&0xff])
	}
	return 0
}

func (c *credCounts) add(t CredentialType, d int32) {
	p := c.pages[t>>8]
	switch {
	case p == nil:
		p = new(credPage)
		c.pages[t>>8] = p
	case p.shared.Load():
		cp := new(credPage)
		cp.n = p.n
		p = cp
		c.pages[t>>8] = p
	}
	p.n[t&0xff] += d
}

// clone returns counts sharing every page with c. It writes only the
// pages' atomic shared flags, so clones may be taken concurrently.
func (c *credCounts) clone() credCounts {
	for _, p := range c.pages {
		if p != nil && !p.shared.Load() {
			p.shared.Store(true)
		}
	}
	return credCounts{pages: c.pages}
}

// nonZero returns the non-zero counts, for tests.
func (c *credCounts) nonZero() map[CredentialType]int {
	m := map[CredentialType]int{}
	for i, p := range c.pages {
		if p == nil {
			continue
		}
		for j, n := range p.n {
			if n != 0 {
				m[CredentialType(i<<8|j)] = int(n)
			}
		}
	}
	return m
}
