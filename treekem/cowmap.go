package treekem

import "sync/atomic"

// cowMap is a map that is cheap to clone: a base map that is never written
// after it is built, shared by every clone, plus a small map of changes
// owned by one tree. A clone copies only the changes; the changes are
// folded into a fresh base once they grow past a fraction of it, so each
// write costs amortized O(1).
type cowMap[K comparable, V any] struct {
	base  map[K]V
	delta map[K]cowEntry[V]
	// flat, set once delta is large, caches base and delta merged, which
	// clones then share as their base instead of copying delta. It is
	// filled by clone (atomically, since cloning only reads the tree) and
	// replaced on every write.
	flat *flatCache[K, V]
}

type flatCache[K comparable, V any] struct {
	m atomic.Pointer[map[K]V]
}

type cowEntry[V any] struct {
	v       V
	deleted bool
}

func (m *cowMap[K, V]) get(k K) (V, bool) {
	if e, ok := m.delta[k]; ok {
		return e.v, !e.deleted
	}
	v, ok := m.base[k]
	return v, ok
}

func (m *cowMap[K, V]) set(k K, v V) {
	if m.delta == nil {
		m.delta = make(map[K]cowEntry[V])
	}
	m.delta[k] = cowEntry[V]{v: v}
	m.changed()
}

func (m *cowMap[K, V]) del(k K) {
	if _, ok := m.get(k); !ok {
		return
	}
	if _, inBase := m.base[k]; !inBase {
		delete(m.delta, k)
		m.changed()
		return
	}
	if m.delta == nil {
		m.delta = make(map[K]cowEntry[V])
	}
	m.delta[k] = cowEntry[V]{deleted: true}
	m.changed()
}

func (m *cowMap[K, V]) threshold() int { return 64 + len(m.base)/16 }

// changed folds a large delta into a new base and resets the flat cache.
func (m *cowMap[K, V]) changed() {
	switch {
	case len(m.delta) > m.threshold():
		m.base, m.delta, m.flat = m.merged(), nil, nil
	case len(m.delta) > m.threshold()/4:
		m.flat = new(flatCache[K, V])
	default:
		m.flat = nil
	}
}

// merged returns a new map holding base with delta applied.
func (m *cowMap[K, V]) merged() map[K]V {
	nb := make(map[K]V, len(m.base)+len(m.delta))
	for k, v := range m.base {
		nb[k] = v
	}
	for k, e := range m.delta {
		if e.deleted {
			delete(nb, k)
		} else {
			nb[k] = e.v
		}
	}
	return nb
}

// clone returns a copy of m. It only reads m (apart from the atomic flat
// cache), so clones may be taken concurrently. A large delta is merged once
// and the result shared by every later clone, so cloning one tree many
// times does not copy the delta each time.
func (m *cowMap[K, V]) clone() cowMap[K, V] {
	if m.flat != nil {
		f := m.flat.m.Load()
		if f == nil {
			nb := m.merged()
			m.flat.m.CompareAndSwap(nil, &nb)
			f = m.flat.m.Load()
		}
		return cowMap[K, V]{base: *f}
	}
	c := cowMap[K, V]{base: m.base}
	if len(m.delta) > 0 {
		c.delta = make(map[K]cowEntry[V], len(m.delta))
		for k, e := range m.delta {
			c.delta[k] = e
		}
	}
	return c
}
