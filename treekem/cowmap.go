package treekem

// cowMap is a map that is cheap to clone: a base map that is never written
// after it is built, shared by every clone, plus a small map of changes
// owned by one tree. A clone copies only the changes; the changes are
// folded into a fresh base once they grow past a fraction of it, so each
// write costs amortized O(1).
type cowMap[K comparable, V any] struct {
	base  map[K]V
	delta map[K]cowEntry[V]
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
	m.maybeFlatten()
}

func (m *cowMap[K, V]) del(k K) {
	if _, ok := m.get(k); !ok {
		return
	}
	if _, inBase := m.base[k]; !inBase {
		delete(m.delta, k)
		return
	}
	if m.delta == nil {
		m.delta = make(map[K]cowEntry[V])
	}
	m.delta[k] = cowEntry[V]{deleted: true}
	m.maybeFlatten()
}

func (m *cowMap[K, V]) threshold() int { return 64 + len(m.base)/16 }

func (m *cowMap[K, V]) maybeFlatten() {
	if len(m.delta) <= m.threshold() {
		return
	}
	m.flatten()
}

func (m *cowMap[K, V]) flatten() {
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
	m.base, m.delta = nb, nil
}

// clone returns a copy that shares the base. If m has accumulated many
// changes it first folds them into a new base, so that clones start small
// and a tree cloned many times does not make every clone pay for the fold.
func (m *cowMap[K, V]) clone() cowMap[K, V] {
	if len(m.delta) > m.threshold()/2 {
		m.flatten()
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
