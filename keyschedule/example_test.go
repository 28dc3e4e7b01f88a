package keyschedule_test

import (
	"errors"
	"fmt"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/keyschedule"
)

// This example derives the secrets of a group's first epoch, exports a
// secret for the application, and uses the secret tree to fetch message keys.
func Example() {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

	// The creator of a group starts from a random init secret.
	init, err := keyschedule.GenerateInitSecret(cs)
	if err != nil {
		panic(err)
	}
	gc := &keyschedule.GroupContext{
		Version:     keyschedule.MLS10,
		CipherSuite: cs,
		GroupID:     []byte("example group"),
		Epoch:       0,
		TreeHash:    cs.Hash([]byte("the ratchet tree")),
	}
	ctx := gc.Bytes()

	// No UpdatePath and no PSKs: the commit and PSK secrets are zero.
	joiner := init.JoinerSecret(nil, ctx)
	pskSecret, _ := keyschedule.PSKSecret(cs, nil)
	epoch := joiner.EpochSecret(pskSecret, ctx)
	secrets := epoch.Derive()
	epoch.Erase()
	joiner.Erase()
	init.Erase()

	exported, _ := secrets.Export("example label", []byte("context"), 16)
	fmt.Println("exported bytes:", len(exported))

	tree, _ := secrets.SecretTree(4, nil)
	key, _ := tree.NextKey(2, keyschedule.Application)
	fmt.Println("sender 2 uses generation", key.Generation)
	key.Erase()

	// A receiver fetching the same key: once, and never again.
	if _, err := tree.Key(3, keyschedule.Application, 0); err == nil {
		_, err = tree.Key(3, keyschedule.Application, 0)
		fmt.Println("again:", errors.Is(err, keyschedule.ErrKeyConsumed))
	}
	_, err = tree.Key(3, keyschedule.Application, 5000)
	fmt.Println("far ahead:", errors.Is(err, keyschedule.ErrTooFarAhead))
	fmt.Println(secrets)
	// Output:
	// exported bytes: 16
	// sender 2 uses generation 0
	// again: true
	// far ahead: true
	// [redacted]
}
