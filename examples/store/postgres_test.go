package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	_ "github.com/lib/pq" // the "postgres" database/sql driver, for tests only

	"github.com/microchat/e2ee/mls"
)

// openPostgres returns n stores on the PostgreSQL database named by
// $E2EE_POSTGRES_DSN, each with its own connection pool (as separate
// server processes would have), on freshly emptied tables. .ci/run starts a
// throwaway PostgreSQL server and sets the variable; without it the
// PostgreSQL tests do not run, and the same tests run on SQLite.
func openPostgres(t *testing.T, n int) []*Store {
	t.Helper()
	dsn := os.Getenv("E2EE_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("E2EE_POSTGRES_DSN is not set: no PostgreSQL server to test against (.ci/run starts one)")
	}
	ctx := context.Background()
	var stores []*Store
	for i := range n {
		db, err := sql.Open("postgres", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		if i == 0 {
			for _, table := range []string{"mls_groups", "mls_key_packages", "mls_psks", "spent_tokens", "token_quotas"} {
				if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
					t.Fatal(err)
				}
			}
		}
		s, err := New(ctx, db, PostgreSQL)
		require.NoError(t, err)
		stores = append(stores, s)
	}
	return stores
}

// TestPostgreSQL runs the store's behaviour tests on PostgreSQL: the same
// code as on SQLite, with the PostgreSQL dialect. The tests share the
// database, so they run one after another.
func TestPostgreSQL(t *testing.T) {
	t.Run("ConcurrentCommitters", func(t *testing.T) {
		s := openPostgres(t, 2)
		testConcurrentCommitters(t, s[0], s[1])
	})
	t.Run("SpentTokens", func(t *testing.T) {
		testSpentTokens(t, openPostgres(t, 4))
	})
	t.Run("TokenQuotas", func(t *testing.T) {
		testTokenQuotas(t, openPostgres(t, 3))
	})
	t.Run("PSKs", func(t *testing.T) {
		testPSKs(t, openPostgres(t, 1)[0])
	})
	t.Run("KeyPackageConsumed", func(t *testing.T) {
		s := openPostgres(t, 2)
		ctx := context.Background()
		kp := keyPackage(t, "bob")
		require.NoError(t, s[0].PutKeyPackage(ctx, kp))
		sig, _ := cs.GenerateSignatureKey()
		alice, err := mls.NewGroup(cs, credential("alice"), sig, nil, nil)
		require.NoError(t, err)
		pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{kp.KeyPackage}})
		require.NoError(t, err)
		require.NoError(t, alice.MergePendingCommit(pc))
		bob, consumed, err := mls.JoinWithStore(ctx, pc.Welcome, s[1], nil, nil)
		require.NoError(t, err)
		save(t, s[1], bob, consumed)
		ref, _ := kp.KeyPackage.Ref()
		if _, err := s[0].KeyPackagePrivate(ctx, ref); !errors.Is(err, mls.ErrNotFound) {
			t.Fatalf("key package after join: %v", err)
		}
		if _, err := s[0].SaveGroupRecords(ctx, []byte("other"), 0, []mls.Record{{Key: []byte("h"), Value: []byte("x")}}, consumed); !errors.Is(err, mls.ErrConflict) {
			t.Fatalf("reused key package: %v", err)
		}
		g := load(t, s[0], bob.GroupID())
		exchange(t, alice, g)
	})
}
