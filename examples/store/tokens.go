package store

import (
	"context"
	"fmt"

	"github.com/microchat/e2ee/sealedsender"
)

var _ sealedsender.QuotaStore = (*Store)(nil)

// tokenQuotasTable is the table of [Store.Reserve]: tokens issued per
// account and period.
func tokenQuotasTable(d Dialect) string {
	return `CREATE TABLE IF NOT EXISTS token_quotas (
			account TEXT NOT NULL,
			period ` + d.bigint + ` NOT NULL,
			issued ` + d.bigint + ` NOT NULL,
			PRIMARY KEY (account, period))`
}

// Reserve implements [sealedsender.QuotaStore] with one conditional
// upsert: the row of (account, period) is created with n, or grows by n
// only if the new count stays within limit. Of concurrent calls, in any
// number of processes sharing the database, no combination can exceed the
// limit.
func (s *Store) Reserve(account string, period uint64, n, limit int) error {
	if n < 0 {
		return sealedsender.ErrBatchSize
	}
	if n > limit {
		return sealedsender.ErrQuotaExceeded
	}
	p, err := toInt64(period)
	if err != nil {
		return err
	}
	rows, err := s.exec(context.Background(), s.db, `INSERT INTO token_quotas (account, period, issued) VALUES (?, ?, ?)
		ON CONFLICT (account, period) DO UPDATE SET issued = token_quotas.issued + excluded.issued
		WHERE token_quotas.issued + excluded.issued <= ?`, account, p, int64(n), int64(limit))
	if err != nil {
		return fmt.Errorf("store: reserving tokens: %w", err)
	}
	if rows != 1 {
		return sealedsender.ErrQuotaExceeded
	}
	return nil
}

// PruneQuotas deletes the quota counts of periods before the given one.
func (s *Store) PruneQuotas(ctx context.Context, before uint64) error {
	b, err := toInt64(before)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.db, `DELETE FROM token_quotas WHERE period < ?`, b); err != nil {
		return fmt.Errorf("store: pruning token quotas: %w", err)
	}
	return nil
}
