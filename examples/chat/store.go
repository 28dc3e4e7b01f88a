package main

import (
	"context"
	"path/filepath"

	"github.com/microchat/e2ee/examples/store"
)

// openStore opens (creating it) the SQLite database of one client in dir.
// The same store code runs on PostgreSQL with store.PostgreSQL.
func openStore(dir, name string) (*store.Store, error) {
	db, err := store.OpenSQLite(filepath.Join(dir, name+".db"))
	if err != nil {
		return nil, err
	}
	return store.New(context.Background(), db, store.SQLite)
}
