package sealedsender

import (
	"errors"
	"sync"
)

// SpentStore records the tokens that have been spent. The application
// implements it on its database; [MemoryStore] is an in-memory
// implementation.
type SpentStore interface {
	// MarkSpent records the token with the given SHA-256 digest as spent,
	// in one atomic check-and-set: if the digest is already recorded it
	// returns [ErrDoubleSpend] and changes nothing. Of any number of
	// concurrent calls with the same digest exactly one may succeed. Period
	// is the key period the token belongs to; entries of periods before the
	// previous one may be deleted, since their tokens are refused anyway.
	MarkSpent(digest [32]byte, period uint64) error
}

// IssuedStore records the SHA-256 digests of the tokens a [SimpleIssuer]
// has issued. [MemoryStore] is an in-memory implementation.
type IssuedStore interface {
	// AddIssued records the digests of newly issued tokens, with the period
	// they were issued in.
	AddIssued(digests [][32]byte, period uint64) error
	// IssuedPeriod returns the period in which the token with the given
	// digest was issued, or an error matching [ErrInvalidToken] if it was
	// never issued (or has been pruned).
	IssuedPeriod(digest [32]byte) (uint64, error)
}

// QuotaStore counts the tokens issued to each account in each period.
// [MemoryStore] is an in-memory implementation.
type QuotaStore interface {
	// Reserve adds n to the count of account in period if the new count
	// does not exceed limit, in one atomic step. Otherwise it returns
	// [ErrQuotaExceeded] and changes nothing.
	Reserve(account string, period uint64, n, limit int) error
}

// MemoryStore is an in-memory [SpentStore], [IssuedStore] and
// [QuotaStore], for tests and single-process demonstrations. It is safe
// for concurrent use. Its contents are lost when the process ends and are
// not shared with other processes, so a restarted server, or a second
// replica, would accept spent tokens again and reset quotas: in
// production use a store on a database every replica shares (examples/store
// has one on SQLite and PostgreSQL). No constructor in this package falls
// back to it: passing it is always an explicit choice.
type MemoryStore struct {
	mu     sync.Mutex
	spent  map[[32]byte]uint64
	issued map[[32]byte]uint64
	quotas map[quotaKey]int
}

type quotaKey struct {
	account string
	period  uint64
}

// NewMemoryStore returns an empty [MemoryStore]. It is meant for tests;
// see [MemoryStore] for why production servers need a durable store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		spent:  make(map[[32]byte]uint64),
		issued: make(map[[32]byte]uint64),
		quotas: make(map[quotaKey]int),
	}
}

// MarkSpent implements [SpentStore].
func (m *MemoryStore) MarkSpent(digest [32]byte, period uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.spent[digest]; ok {
		return ErrDoubleSpend
	}
	m.spent[digest] = period
	return nil
}

// AddIssued implements [IssuedStore].
func (m *MemoryStore) AddIssued(digests [][32]byte, period uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range digests {
		if _, ok := m.issued[d]; ok {
			// A 256-bit collision with crypto/rand output means the
			// randomness source is broken.
			return errors.New("sealedsender: duplicate issued token digest")
		}
	}
	for _, d := range digests {
		m.issued[d] = period
	}
	return nil
}

// IssuedPeriod implements [IssuedStore].
func (m *MemoryStore) IssuedPeriod(digest [32]byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.issued[digest]
	if !ok {
		return 0, ErrInvalidToken
	}
	return p, nil
}

// Reserve implements [QuotaStore].
func (m *MemoryStore) Reserve(account string, period uint64, n, limit int) error {
	if n < 0 {
		return ErrBatchSize
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := quotaKey{account, period}
	if m.quotas[k]+n > limit {
		return ErrQuotaExceeded
	}
	m.quotas[k] += n
	return nil
}

// Prune deletes every record of a period before the given one: spent and
// issued tokens and quota counts. Call it with the previous period's number
// (or an earlier one): tokens of older periods are refused before the
// stores are consulted, so forgetting them is safe.
func (m *MemoryStore) Prune(before uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d, p := range m.spent {
		if p < before {
			delete(m.spent, d)
		}
	}
	for d, p := range m.issued {
		if p < before {
			delete(m.issued, d)
		}
	}
	for k := range m.quotas {
		if k.period < before {
			delete(m.quotas, k)
		}
	}
}
