package main

import "github.com/microchat/e2ee/mls"

// openStore opens the database of one client.
func openStore(dir, name string) (store, error) {
	return mls.NewMemoryStore(), nil
}
