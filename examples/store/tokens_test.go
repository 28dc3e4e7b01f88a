package store

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/sealedsender"
)

// TestTokenQuotas reserves tokens from many goroutines through several
// database handles: the total never exceeds the limit, and accounts and
// periods are counted apart.
func TestTokenQuotas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quota.db")
	var stores []*Store
	for range 3 {
		_, s := openStore(t, path)
		stores = append(stores, s)
	}
	testTokenQuotas(t, stores)
}

func testTokenQuotas(t *testing.T, stores []*Store) {
	const limit = 50
	var granted atomic.Int64
	var wg sync.WaitGroup
	for w := range 6 {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for range 20 {
				err := s.Reserve("alice", 7, 1, limit)
				switch {
				case err == nil:
					granted.Add(1)
				case !errors.Is(err, sealedsender.ErrQuotaExceeded):
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if g := granted.Load(); g != limit {
		t.Fatalf("granted %d of a quota of %d", g, limit)
	}
	require.NoError(t, stores[0].Reserve("bob", 7, limit, limit), "another account")
	require.NoError(t, stores[1].Reserve("alice", 8, 1, limit), "another period")
	if err := stores[2].Reserve("carol", 7, limit+1, limit); !errors.Is(err, sealedsender.ErrQuotaExceeded) {
		t.Fatalf("over the limit at once: %v", err)
	}
}
