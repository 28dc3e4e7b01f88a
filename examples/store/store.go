// Package store keeps MLS groups (as the records of [mls.GroupStore]),
// KeyPackage private keys, PSKs and spent sealed-sender tokens in an SQL
// database, through database/sql.
//
// It implements [mls.GroupStore], [mls.KeyStore] and
// [sealedsender.SpentStore]. The same statements run on SQLite (embedded,
// with the pure-Go driver modernc.org/sqlite: see [OpenSQLite]) and on
// PostgreSQL, for deployments that outgrow one machine: open the database
// with a PostgreSQL driver and pass [PostgreSQL] to [New].
//
// Every save is one transaction whose first statement is the conditional
// write (compare-and-set on the group's revision in mls_groups), followed
// by the record writes (mls_records, one row per record) and the deletion
// of what the step consumed, so that concurrent writers, in one process or
// several sharing the database, serialize on the database and exactly one
// of them wins, and a crash leaves the whole step or none of it.
//
// The stored group states and KeyPackages hold secrets, in the clear:
// keep the database on encrypted storage. SQLite is opened with
// secure_delete and a rollback journal, so that a replaced state or a
// consumed KeyPackage key is overwritten in the database file rather than
// left in a free page (a deleted journal file may still hold it on disk
// until overwritten).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// Dialect holds what differs between the SQL databases the store runs on.
type Dialect struct {
	name         string
	blob, bigint string
	numbered     bool // placeholders are $1, $2, ... instead of ?
}

// The supported dialects.
var (
	// SQLite is for SQLite 3.24 or later (UPSERT), such as the embedded
	// modernc.org/sqlite opened by [OpenSQLite].
	SQLite = Dialect{name: "sqlite", blob: "BLOB", bigint: "INTEGER"}
	// PostgreSQL is for PostgreSQL 9.5 or later.
	PostgreSQL = Dialect{name: "postgres", blob: "BYTEA", bigint: "BIGINT", numbered: true}
)

// String returns the dialect's name.
func (d Dialect) String() string { return d.name }

// rebind rewrites the ? placeholders of q for the dialect.
func (d Dialect) rebind(q string) string {
	if !d.numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Store is an [mls.GroupStore], [mls.KeyStore] and
// [sealedsender.SpentStore] on an SQL database. It is safe for concurrent
// use, and several Stores (in several processes) may share one database.
type Store struct {
	db *sql.DB
	d  Dialect
}

var (
	_ mls.GroupStore          = (*Store)(nil)
	_ mls.KeyStore            = (*Store)(nil)
	_ sealedsender.SpentStore = (*Store)(nil)
)

// OpenSQLite opens (creating it if needed) the SQLite database file at
// path with the settings the store relies on: a busy timeout, so that
// writers from several connections or processes wait for each other
// instead of failing; BEGIN IMMEDIATE transactions, so that a transaction
// takes the write lock before it reads; full synchronous writes, so that a
// saved state survives a power loss; and secure_delete.
func OpenSQLite(path string) (*sql.DB, error) {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(30000)", "secure_delete(on)", "synchronous(full)", "journal_mode(delete)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// New returns a store on db, creating its tables if they do not exist.
// The caller keeps ownership of db.
func New(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{db: db, d: d}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS mls_groups (
			group_id ` + d.blob + ` PRIMARY KEY,
			revision ` + d.bigint + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS mls_records (
			group_id ` + d.blob + ` NOT NULL,
			k ` + d.blob + ` NOT NULL,
			v ` + d.blob + ` NOT NULL,
			PRIMARY KEY (group_id, k))`,
		`CREATE TABLE IF NOT EXISTS mls_key_packages (
			ref ` + d.blob + ` PRIMARY KEY,
			data ` + d.blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS mls_psks (
			id ` + d.blob + ` PRIMARY KEY,
			secret ` + d.blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS spent_tokens (
			digest ` + d.blob + ` PRIMARY KEY,
			period ` + d.bigint + ` NOT NULL)`,
		tokenQuotasTable(d),
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("store: creating tables: %w", err)
		}
	}
	return s, nil
}

func (s *Store) exec(ctx context.Context, e interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, q string, args ...any) (int64, error) {
	res, err := e.ExecContext(ctx, s.d.rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func toInt64(v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("store: value %d out of range", v)
	}
	return int64(v), nil
}

// LoadGroupRecords implements [mls.GroupStore]. It reads the revision and
// the records in one transaction on one snapshot (repeatable read on
// PostgreSQL; SQLite transactions are serializable), so that they belong
// to one save.
func (s *Store) LoadGroupRecords(ctx context.Context, groupID []byte) (*mls.StoredGroup, error) {
	opts := &sql.TxOptions{}
	if s.d.name != "sqlite" {
		opts = &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("store: loading group: %w", err)
	}
	defer tx.Rollback()
	var rev int64
	err = tx.QueryRowContext(ctx, s.d.rebind(`SELECT revision FROM mls_groups WHERE group_id = ?`), groupID).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: group state", mls.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: loading group: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT k, v FROM mls_records WHERE group_id = ?`), groupID)
	if err != nil {
		return nil, fmt.Errorf("store: loading group: %w", err)
	}
	defer rows.Close()
	out := &mls.StoredGroup{Revision: uint64(rev)}
	for rows.Next() {
		var r mls.Record
		if err := rows.Scan(&r.Key, &r.Value); err != nil {
			return nil, fmt.Errorf("store: loading group: %w", err)
		}
		out.Records = append(out.Records, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: loading group: %w", err)
	}
	return out, nil
}

// SaveGroupRecords implements [mls.GroupStore] in one transaction whose
// first statement is the compare-and-set on the revision.
func (s *Store) SaveGroupRecords(ctx context.Context, groupID []byte, prevRevision uint64, writes []mls.Record, consumed *mls.Consumed) (uint64, error) {
	prev, err := toInt64(prevRevision)
	if err != nil || prev == math.MaxInt64 {
		return 0, fmt.Errorf("store: revision %d out of range", prevRevision)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: saving group: %w", err)
	}
	defer tx.Rollback()
	var n int64
	if prev == 0 {
		n, err = s.exec(ctx, tx, `INSERT INTO mls_groups (group_id, revision) VALUES (?, 1)
			ON CONFLICT (group_id) DO NOTHING`, groupID)
	} else {
		n, err = s.exec(ctx, tx, `UPDATE mls_groups SET revision = revision + 1
			WHERE group_id = ? AND revision = ?`, groupID, prev)
	}
	if err != nil {
		return 0, fmt.Errorf("store: saving group: %w", err)
	}
	if n != 1 {
		return 0, fmt.Errorf("%w: group state is no longer at revision %d", mls.ErrConflict, prevRevision)
	}
	for _, w := range writes {
		if w.Value == nil {
			_, err = s.exec(ctx, tx, `DELETE FROM mls_records WHERE group_id = ? AND k = ?`, groupID, w.Key)
		} else {
			_, err = s.exec(ctx, tx, `INSERT INTO mls_records (group_id, k, v) VALUES (?, ?, ?)
				ON CONFLICT (group_id, k) DO UPDATE SET v = excluded.v`, groupID, w.Key, w.Value)
		}
		if err != nil {
			return 0, fmt.Errorf("store: saving group: %w", err)
		}
	}
	if consumed != nil {
		for _, ref := range consumed.KeyPackages {
			if n, err = s.exec(ctx, tx, `DELETE FROM mls_key_packages WHERE ref = ?`, []byte(ref)); err == nil && n != 1 {
				err = fmt.Errorf("%w: key package %x already consumed", mls.ErrConflict, []byte(ref))
			}
			if err != nil {
				return 0, fmt.Errorf("store: saving group: %w", err)
			}
		}
		for _, id := range consumed.PSKs {
			if n, err = s.exec(ctx, tx, `DELETE FROM mls_psks WHERE id = ?`, id); err == nil && n != 1 {
				err = fmt.Errorf("%w: PSK %x already consumed", mls.ErrConflict, id)
			}
			if err != nil {
				return 0, fmt.Errorf("store: saving group: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: saving group: %w", err)
	}
	return prevRevision + 1, nil
}

// DeleteGroup implements [mls.GroupStore].
func (s *Store) DeleteGroup(ctx context.Context, groupID []byte, prevRevision uint64) error {
	prev, err := toInt64(prevRevision)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: deleting group: %w", err)
	}
	defer tx.Rollback()
	n, err := s.exec(ctx, tx, `DELETE FROM mls_groups WHERE group_id = ? AND revision = ?`, groupID, prev)
	if err != nil {
		return fmt.Errorf("store: deleting group: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("%w: group state changed or deleted", mls.ErrConflict)
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM mls_records WHERE group_id = ?`, groupID); err != nil {
		return fmt.Errorf("store: deleting group: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: deleting group: %w", err)
	}
	return nil
}

// PutKeyPackage implements [mls.KeyStore].
func (s *Store) PutKeyPackage(ctx context.Context, kp *mls.KeyPackagePrivate) error {
	data, err := kp.Bytes()
	if err != nil {
		return err
	}
	defer clear(data)
	ref, err := kp.KeyPackage.Ref()
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.db, `INSERT INTO mls_key_packages (ref, data) VALUES (?, ?)`, []byte(ref), data); err != nil {
		return fmt.Errorf("store: storing key package: %w", err)
	}
	return nil
}

// KeyPackagePrivate implements [mls.KeyStore].
func (s *Store) KeyPackagePrivate(ctx context.Context, ref mls.KeyPackageRef) (*mls.KeyPackagePrivate, error) {
	var data []byte
	err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT data FROM mls_key_packages WHERE ref = ?`), []byte(ref)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: key package %x", mls.ErrNotFound, []byte(ref))
	}
	if err != nil {
		return nil, fmt.Errorf("store: loading key package: %w", err)
	}
	defer clear(data)
	return mls.ParseKeyPackagePrivate(data)
}

// FindKeyPackage implements [mls.KeyStore] with one query for the
// client's KeyPackage references, matched in memory against refs (a
// Welcome may list 100,000), and one for the matching KeyPackage.
func (s *Store) FindKeyPackage(ctx context.Context, refs []mls.KeyPackageRef) (mls.KeyPackageRef, *mls.KeyPackagePrivate, error) {
	want := make(map[string]int, len(refs))
	for i, r := range refs {
		if _, ok := want[string(r)]; !ok {
			want[string(r)] = i
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT ref FROM mls_key_packages`)
	if err != nil {
		return nil, nil, fmt.Errorf("store: finding key package: %w", err)
	}
	best := -1
	for rows.Next() {
		var ref []byte
		if err := rows.Scan(&ref); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("store: finding key package: %w", err)
		}
		if i, ok := want[string(ref)]; ok && (best < 0 || i < best) {
			best = i
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: finding key package: %w", err)
	}
	if best < 0 {
		return nil, nil, fmt.Errorf("%w: key package", mls.ErrNotFound)
	}
	kp, err := s.KeyPackagePrivate(ctx, refs[best])
	if err != nil {
		return nil, nil, err
	}
	return refs[best], kp, nil
}

// PutPSK implements [mls.KeyStore].
func (s *Store) PutPSK(ctx context.Context, id, secret []byte) error {
	if _, err := s.exec(ctx, s.db, `INSERT INTO mls_psks (id, secret) VALUES (?, ?)`, id, secret); err != nil {
		return fmt.Errorf("store: storing PSK: %w", err)
	}
	return nil
}

// PSK implements [mls.KeyStore].
func (s *Store) PSK(ctx context.Context, id []byte) ([]byte, error) {
	var secret []byte
	err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT secret FROM mls_psks WHERE id = ?`), id).Scan(&secret)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: PSK %x", mls.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: loading PSK: %w", err)
	}
	return secret, nil
}

// MarkSpent implements [sealedsender.SpentStore] with one conditional
// insert: of concurrent calls with the same digest, in any number of
// processes, exactly one inserts the row.
func (s *Store) MarkSpent(digest [32]byte, period uint64) error {
	p, err := toInt64(period)
	if err != nil {
		return err
	}
	n, err := s.exec(context.Background(), s.db, `INSERT INTO spent_tokens (digest, period) VALUES (?, ?)
		ON CONFLICT (digest) DO NOTHING`, digest[:], p)
	if err != nil {
		return fmt.Errorf("store: marking token spent: %w", err)
	}
	if n != 1 {
		return sealedsender.ErrDoubleSpend
	}
	return nil
}

// PruneSpent deletes the spent tokens of periods before the given one
// (see [sealedsender.SpentStore]).
func (s *Store) PruneSpent(ctx context.Context, before uint64) error {
	b, err := toInt64(before)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.db, `DELETE FROM spent_tokens WHERE period < ?`, b); err != nil {
		return fmt.Errorf("store: pruning spent tokens: %w", err)
	}
	return nil
}
