package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	_ "github.com/lib/pq"  // the "postgres" database/sql driver
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// db is the delivery service's state: published KeyPackages, Welcomes
// waiting for their recipients, each group's message log (one accepted
// commit per epoch) and its latest GroupInfo. It holds no secrets: every
// MLS message in it is end-to-end encrypted or public by design.
type db struct {
	sql      *sql.DB
	postgres bool
}

var (
	errNotFound = errors.New("server: not found")
	// errStaleCommit means a commit for the epoch was already accepted.
	errStaleCommit = errors.New("server: a commit for this epoch was already accepted")
)

func openDB(ctx context.Context, sqlitePath, postgresDSN string) (*db, error) {
	var d *db
	if postgresDSN != "" {
		s, err := sql.Open("postgres", postgresDSN)
		if err != nil {
			return nil, err
		}
		d = &db{sql: s, postgres: true}
	} else {
		s, err := sql.Open("sqlite", "file:"+sqlitePath+"?_pragma=busy_timeout(30000)&_pragma=journal_mode(wal)&_txlock=immediate")
		if err != nil {
			return nil, err
		}
		// One writer at a time keeps SQLite's locking simple.
		s.SetMaxOpenConns(1)
		d = &db{sql: s}
	}
	if err := d.sql.PingContext(ctx); err != nil {
		d.sql.Close()
		return nil, err
	}
	serial := "INTEGER PRIMARY KEY AUTOINCREMENT"
	blob, bigint := "BLOB", "INTEGER"
	if d.postgres {
		serial, blob, bigint = "BIGSERIAL PRIMARY KEY", "BYTEA", "BIGINT"
	}
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS ds_key_packages (
			id ` + serial + `,
			identity ` + blob + ` NOT NULL,
			ref ` + blob + ` NOT NULL,
			last_resort ` + bigint + ` NOT NULL,
			data ` + blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ds_key_package_owners (
			ref ` + blob + ` PRIMARY KEY,
			identity ` + blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ds_welcomes (
			id ` + serial + `,
			identity ` + blob + ` NOT NULL,
			data ` + blob + ` NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ds_commits (
			group_id ` + blob + ` NOT NULL,
			epoch ` + bigint + ` NOT NULL,
			digest ` + blob + ` NOT NULL,
			PRIMARY KEY (group_id, epoch))`,
		`CREATE TABLE IF NOT EXISTS ds_messages (
			id ` + serial + `,
			group_id ` + blob + ` NOT NULL,
			digest ` + blob + ` NOT NULL,
			data ` + blob + ` NOT NULL)`,
		`CREATE UNIQUE INDEX IF NOT EXISTS ds_messages_digest ON ds_messages (group_id, digest)`,
		`CREATE TABLE IF NOT EXISTS ds_group_infos (
			group_id ` + blob + ` PRIMARY KEY,
			data ` + blob + ` NOT NULL)`,
	} {
		if _, err := d.sql.ExecContext(ctx, stmt); err != nil {
			d.sql.Close()
			return nil, fmt.Errorf("server: creating tables: %w", err)
		}
	}
	return d, nil
}

// q rewrites ? placeholders as $1, $2, ... for PostgreSQL.
func (d *db) q(query string) string {
	if !d.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (d *db) putKeyPackage(ctx context.Context, identity, ref []byte, lastResort bool, data []byte) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	lr := 0
	if lastResort {
		lr = 1
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO ds_key_packages (identity, ref, last_resort, data) VALUES (?, ?, ?, ?)`), identity, ref, lr, data); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM ds_key_package_owners WHERE ref = ?`), ref); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO ds_key_package_owners (ref, identity) VALUES (?, ?)`), ref, identity); err != nil {
		return err
	}
	return tx.Commit()
}

// takeKeyPackage hands out one KeyPackage of identity: the oldest
// one-time KeyPackage, deleted as it is handed out, else a last-resort one.
func (d *db) takeKeyPackage(ctx context.Context, identity []byte) ([]byte, error) {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var id int64
	var lr int
	var data []byte
	err = tx.QueryRowContext(ctx, d.q(`SELECT id, last_resort, data FROM ds_key_packages WHERE identity = ? ORDER BY last_resort, id LIMIT 1`), identity).Scan(&id, &lr, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	if lr == 0 {
		if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM ds_key_packages WHERE id = ?`), id); err != nil {
			return nil, err
		}
	}
	return data, tx.Commit()
}

// putWelcome queues a Welcome for the owners of the KeyPackages it names.
func (d *db) putWelcome(ctx context.Context, refs [][]byte, data []byte) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	seen := map[string]bool{}
	for _, ref := range refs {
		var identity []byte
		err := tx.QueryRowContext(ctx, d.q(`SELECT identity FROM ds_key_package_owners WHERE ref = ?`), ref).Scan(&identity)
		if errors.Is(err, sql.ErrNoRows) {
			continue // not a KeyPackage published here
		}
		if err != nil {
			return err
		}
		if seen[string(identity)] {
			continue
		}
		seen[string(identity)] = true
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO ds_welcomes (identity, data) VALUES (?, ?)`), identity, data); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// takeWelcomes returns and deletes the Welcomes queued for identity.
func (d *db) takeWelcomes(ctx context.Context, identity []byte) ([][]byte, error) {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, d.q(`SELECT data FROM ds_welcomes WHERE identity = ? ORDER BY id`), identity)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, data)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, d.q(`DELETE FROM ds_welcomes WHERE identity = ?`), identity); err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

// appendMessage adds a message to the group's log and returns its
// sequence number. A commit is accepted only as the first of its epoch;
// a later one returns errStaleCommit and is not logged. Sending the same
// bytes again is idempotent: it returns the sequence number they got the
// first time, so that a client that crashed before it heard the answer
// can simply send again (the persistence protocol of package mls).
func (d *db) appendMessage(ctx context.Context, groupID []byte, epoch uint64, commit bool, data []byte) (int64, error) {
	digest := sha256.Sum256(data)
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var seq int64
	err = tx.QueryRowContext(ctx, d.q(`SELECT id FROM ds_messages WHERE group_id = ? AND digest = ?`), groupID, digest[:]).Scan(&seq)
	if err == nil {
		return seq, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if commit {
		if epoch > 1<<62 {
			return 0, errors.New("server: epoch out of range")
		}
		res, err := tx.ExecContext(ctx, d.q(`INSERT INTO ds_commits (group_id, epoch, digest) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`), groupID, int64(epoch), digest[:])
		if err != nil {
			return 0, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, err
		} else if n == 0 {
			return 0, errStaleCommit
		}
	}
	if d.postgres {
		err = tx.QueryRowContext(ctx, `INSERT INTO ds_messages (group_id, digest, data) VALUES ($1, $2, $3) RETURNING id`, groupID, digest[:], data).Scan(&seq)
	} else {
		var res sql.Result
		res, err = tx.ExecContext(ctx, `INSERT INTO ds_messages (group_id, digest, data) VALUES (?, ?, ?)`, groupID, digest[:], data)
		if err == nil {
			seq, err = res.LastInsertId()
		}
	}
	if err != nil {
		return 0, err
	}
	return seq, tx.Commit()
}

// acceptedCommit returns the commit accepted for the group's epoch, with
// its sequence number, or errNotFound.
func (d *db) acceptedCommit(ctx context.Context, groupID []byte, epoch uint64) (logEntry, error) {
	var e logEntry
	if epoch > 1<<62 {
		return e, errNotFound
	}
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT m.id, m.data FROM ds_commits c JOIN ds_messages m
		ON m.group_id = c.group_id AND m.digest = c.digest WHERE c.group_id = ? AND c.epoch = ?`), groupID, int64(epoch)).Scan(&e.Seq, &e.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return e, errNotFound
	}
	return e, err
}

type logEntry struct {
	Seq  int64  `json:"seq"`
	Data []byte `json:"data"`
}

// messages returns up to limit messages of the group's log after seq.
func (d *db) messages(ctx context.Context, groupID []byte, after int64, limit int) ([]logEntry, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT id, data FROM ds_messages WHERE group_id = ? AND id > ? ORDER BY id LIMIT ?`), groupID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []logEntry{}
	for rows.Next() {
		var e logEntry
		if err := rows.Scan(&e.Seq, &e.Data); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (d *db) putGroupInfo(ctx context.Context, groupID, data []byte) error {
	_, err := d.sql.ExecContext(ctx, d.q(`INSERT INTO ds_group_infos (group_id, data) VALUES (?, ?)
		ON CONFLICT (group_id) DO UPDATE SET data = excluded.data`), groupID, data)
	return err
}

func (d *db) groupInfo(ctx context.Context, groupID []byte) ([]byte, error) {
	var data []byte
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT data FROM ds_group_infos WHERE group_id = ?`), groupID).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound
	}
	return data, err
}
