package keyschedule

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
)

const testSuite = hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

func testSecret(cs hpke.CipherSuite, seed byte) []byte {
	b := make([]byte, cs.HashSize())
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

// refLeafSecret derives a leaf's secret from the root the slow, obvious way,
// independently of SecretTree's lazy frontier.
func refLeafSecret(cs hpke.CipherSuite, root []byte, leaf, n uint32) []byte {
	x := treemath.Root(n)
	target := treemath.LeafIndex(leaf).Node()
	s := root
	for x != target {
		if target < x {
			s, x = cs.ExpandWithLabel(s, "tree", []byte("left"), cs.HashSize()), treemath.Left(x)
		} else {
			s, x = cs.ExpandWithLabel(s, "tree", []byte("right"), cs.HashSize()), treemath.Right(x, n)
		}
	}
	return s
}

// refRatchetSecrets returns ratchet_secret_[leaf]_[0..count-1].
func refRatchetSecrets(cs hpke.CipherSuite, root []byte, leaf, n uint32, typ RatchetType, count int) [][]byte {
	label := "application"
	if typ == Handshake {
		label = "handshake"
	}
	s := cs.ExpandWithLabel(refLeafSecret(cs, root, leaf, n), label, nil, cs.HashSize())
	out := [][]byte{s}
	for g := uint32(0); len(out) < count; g++ {
		s = cs.DeriveTreeSecret(s, "secret", g, cs.HashSize())
		out = append(out, s)
	}
	return out
}

// stateSlices returns every byte slice the tree holds.
func stateSlices(t *SecretTree) [][]byte {
	var out [][]byte
	for _, s := range t.nodes {
		out = append(out, s)
	}
	for _, s := range t.senders {
		for _, r := range []*ratchet{&s.handshake, &s.application} {
			out = append(out, r.secret)
			for _, k := range r.skipped {
				out = append(out, k.Key, k.Nonce)
			}
		}
	}
	return out
}

func containsSlice(all [][]byte, b []byte) bool {
	for _, s := range all {
		if bytes.Equal(s, b) {
			return true
		}
	}
	return false
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func newTestTree(t *testing.T, n uint32, cfg *Config) (*SecretTree, []byte) {
	t.Helper()
	root := testSecret(testSuite, 7)
	tree, err := NewSecretTree(testSuite, root, n, cfg)
	require.NoError(t, err)
	return tree, root
}

// TestSecretTreeDeletion checks the deletion schedule of RFC 9420, Section
// 9.2: a fetched key cannot be fetched again, and no ratchet secret of an
// earlier generation remains in the ratchet's state, nor in the memory the
// tree held it in.
func TestSecretTreeDeletion(t *testing.T) {
	const n, leaf = 8, 5
	tree, root := newTestTree(t, n, &Config{OutOfOrderTolerance: 4})
	ref := refRatchetSecrets(testSuite, root, leaf, n, Application, 40)

	k, err := tree.Key(leaf, Application, 0)
	require.NoError(t, err)
	if want := ratchetKey(testSuite, ref[0], 0); !bytes.Equal(k.Key, want.Key) || !bytes.Equal(k.Nonce, want.Nonce) {
		t.Fatal("generation 0 key differs from the reference derivation")
	}
	if _, err := tree.Key(leaf, Application, 0); !errors.Is(err, ErrKeyConsumed) {
		t.Fatalf("fetching generation 0 again: err = %v, want ErrKeyConsumed", err)
	}

	var held [][]byte // every ratchet secret buffer the tree has held
	r := &tree.senders[leaf].application
	for _, g := range []uint32{1, 2, 9, 7, 20, 17, 30, 29, 31} {
		prev, prevGen := r.secret, r.generation
		if _, err := tree.Key(leaf, Application, g); err != nil {
			t.Fatalf("generation %d: %v", g, err)
		}
		if r.generation != prevGen {
			held = append(held, prev)
		}
		if _, err := tree.Key(leaf, Application, g); !errors.Is(err, ErrKeyConsumed) {
			t.Fatalf("fetching generation %d again: err = %v, want ErrKeyConsumed", g, err)
		}
		state := stateSlices(tree)
		require.Equal(t, ref[r.generation], r.secret, "after generatio")
		for j := range r.generation {
			if containsSlice(state, ref[j]) {
				t.Fatalf("after generation %d, ratchet secret %d is still in the tree", g, j)
			}
		}
		for i, b := range held {
			if !isZero(b) {
				t.Fatalf("after generation %d, the buffer of an earlier ratchet secret (%d) was not zeroed", g, i)
			}
		}
		if len(r.skipped) > 4 {
			t.Fatalf("%d skipped keys kept, tolerance is 4", len(r.skipped))
		}
	}
	// The leaf secret and the node secrets on its path are gone too.
	state := stateSlices(tree)
	x := treemath.LeafIndex(leaf).Node()
	for {
		s := refLeafSecretAt(testSuite, root, x, n)
		if containsSlice(state, s) {
			t.Errorf("secret of node %d on the path of leaf %d remains", x, leaf)
		}
		if x == treemath.Root(n) {
			break
		}
		x = treemath.Parent(x, n)
	}
}

// refLeafSecretAt derives the secret of any node x.
func refLeafSecretAt(cs hpke.CipherSuite, root []byte, target treemath.NodeIndex, n uint32) []byte {
	x, s := treemath.Root(n), root
	for x != target {
		if target < x {
			s, x = cs.ExpandWithLabel(s, "tree", []byte("left"), cs.HashSize()), treemath.Left(x)
		} else {
			s, x = cs.ExpandWithLabel(s, "tree", []byte("right"), cs.HashSize()), treemath.Right(x, n)
		}
	}
	return s
}

func TestSecretTreeOutOfOrder(t *testing.T) {
	tree, root := newTestTree(t, 4, &Config{OutOfOrderTolerance: 3, MaxForwardDistance: 10})
	ref := refRatchetSecrets(testSuite, root, 2, 4, Handshake, 20)
	k, err := tree.Key(2, Handshake, 10)
	require.NoError(t, err)
	if !bytes.Equal(k.Key, ratchetKey(testSuite, ref[10], 10).Key) {
		t.Fatal("generation 10 key differs from the reference")
	}
	for _, g := range []uint32{0, 1, 6} {
		if _, err := tree.Key(2, Handshake, g); !errors.Is(err, ErrKeyConsumed) {
			t.Errorf("generation %d beyond the tolerance: err = %v, want ErrKeyConsumed", g, err)
		}
	}
	for _, g := range []uint32{8, 7, 9} {
		k, err := tree.Key(2, Handshake, g)
		require.NoError(t, err, "skipped generation %d", g)
		want := ratchetKey(testSuite, ref[g], g)
		if k.Generation != g || !bytes.Equal(k.Key, want.Key) || !bytes.Equal(k.Nonce, want.Nonce) {
			t.Errorf("skipped generation %d: wrong key", g)
		}
	}
	if n := len(tree.senders[2].handshake.skipped); n != 0 {
		t.Errorf("%d skipped keys remain after all were fetched", n)
	}
	// The other ratchet of the leaf is independent.
	if k, err := tree.NextKey(2, Application); err != nil || k.Generation != 0 {
		t.Errorf("NextKey(application) = %v, %v; want generation 0", k, err)
	}
	if k, err := tree.NextKey(2, Handshake); err != nil || k.Generation != 11 {
		t.Errorf("NextKey(handshake) = %v, %v; want generation 11", k, err)
	}
}

func TestSecretTreeTooFarAhead(t *testing.T) {
	for _, tc := range []struct {
		cfg     *Config
		allowed uint32
	}{
		{nil, DefaultMaxForwardDistance},
		{&Config{MaxForwardDistance: 5}, 5},
		{&Config{MaxForwardDistance: -1}, 0},
	} {
		t.Run(fmt.Sprint(tc.allowed), func(t *testing.T) {
			tree, root := newTestTree(t, 2, tc.cfg)
			if _, err := tree.Key(1, Application, tc.allowed+1); !errors.Is(err, ErrTooFarAhead) {
				t.Fatalf("generation %d: err = %v, want ErrTooFarAhead", tc.allowed+1, err)
			}
			if len(tree.senders) != 0 || len(tree.nodes) != 1 {
				t.Fatal("a refused request derived secrets")
			}
			if _, err := tree.Key(1, Handshake, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := tree.Key(1, Application, tc.allowed+1); !errors.Is(err, ErrTooFarAhead) {
				t.Fatalf("generation %d: err = %v, want ErrTooFarAhead", tc.allowed+1, err)
			}
			r := &tree.senders[1].application
			if r.generation != 0 || len(r.skipped) != 0 || !bytes.Equal(r.secret, refRatchetSecrets(testSuite, root, 1, 2, Application, 1)[0]) {
				t.Fatalf("a refused request changed the ratchet: generation %d, %d skipped", r.generation, len(r.skipped))
			}
			if _, err := tree.Key(1, Application, tc.allowed); err != nil {
				t.Fatalf("generation %d: %v", tc.allowed, err)
			}
			// The distance counts from the ratchet's new position.
			if _, err := tree.Key(1, Application, 2*tc.allowed+1); err != nil {
				t.Fatalf("generation %d: %v", 2*tc.allowed+1, err)
			}
			if _, err := tree.Key(1, Application, 3*tc.allowed+3); !errors.Is(err, ErrTooFarAhead) {
				t.Fatalf("generation %d: err = %v, want ErrTooFarAhead", 3*tc.allowed+3, err)
			}
		})
	}
}

func TestSecretTreeUseKey(t *testing.T) {
	tree, root := newTestTree(t, 4, nil)
	ref := refRatchetSecrets(testSuite, root, 3, 4, Application, 8)
	errBad := errors.New("bad message")
	before := tree.Bytes()
	for range 2 {
		err := tree.UseKey(3, Application, 5, func(k MessageKey) error {
			if !bytes.Equal(k.Key, ratchetKey(testSuite, ref[5], 5).Key) {
				t.Error("UseKey passed the wrong key")
			}
			return errBad
		})
		require.ErrorIs(t, err, errBad, "UseKey =")
		// Not even the leaf's ratchets are started: the tree is unchanged.
		if _, started := tree.senders[3]; started || !bytes.Equal(tree.Bytes(), before) {
			t.Fatal("a failed UseKey changed the tree")
		}
	}
	var seen MessageKey
	if err := tree.UseKey(3, Application, 5, func(k MessageKey) error { seen = k; return nil }); err != nil {
		t.Fatal(err)
	}
	if !isZero(seen.Key) || !isZero(seen.Nonce) {
		t.Error("UseKey did not erase the key after use")
	}
	if err := tree.UseKey(3, Application, 5, func(MessageKey) error { return nil }); !errors.Is(err, ErrKeyConsumed) {
		t.Fatalf("UseKey of a consumed key = %v, want ErrKeyConsumed", err)
	}
	called := false
	if err := tree.UseKey(3, Application, 2, func(MessageKey) error { called = true; return errBad }); !errors.Is(err, errBad) {
		t.Fatal(err)
	}
	if _, err := tree.Key(3, Application, 2); err != nil || !called {
		t.Fatalf("a skipped key was lost after a failed UseKey: %v", err)
	}
}

func TestSecretTreeLazy(t *testing.T) {
	const n = 1 << 10
	tree, root := newTestTree(t, n, nil)
	if _, err := tree.Key(700, Handshake, 0); err != nil {
		t.Fatal(err)
	}
	// Starting one leaf leaves one secret per level: the copath.
	if len(tree.nodes) != 10 || len(tree.senders) != 1 {
		t.Fatalf("after one leaf: %d node secrets and %d senders, want 10 and 1", len(tree.nodes), len(tree.senders))
	}
	for _, x := range treemath.Copath(treemath.LeafIndex(700).Node(), n) {
		if !bytes.Equal(tree.nodes[x], refLeafSecretAt(testSuite, root, x, n)) {
			t.Errorf("copath node %d secret missing or wrong", x)
		}
	}
	for leaf := range uint32(n) {
		k, err := tree.Key(leaf, Application, 0)
		require.NoError(t, err)
		ref := refRatchetSecrets(testSuite, root, leaf, n, Application, 1)
		if !bytes.Equal(k.Key, ratchetKey(testSuite, ref[0], 0).Key) {
			t.Fatalf("leaf %d: wrong key", leaf)
		}
	}
	if len(tree.nodes) != 0 {
		t.Errorf("%d node secrets remain after every leaf was started", len(tree.nodes))
	}
}

func TestSecretTreeErrors(t *testing.T) {
	if _, err := NewSecretTree(testSuite, make([]byte, 5), 2, nil); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("short secret: %v", err)
	}
	if _, err := NewSecretTree(testSuite, testSecret(testSuite, 1), 0, nil); !errors.Is(err, ErrInvalidLeaf) {
		t.Errorf("no leaves: %v", err)
	}
	if _, err := NewSecretTree(hpke.CipherSuite(0x99), nil, 2, nil); !errors.Is(err, hpke.ErrUnsupportedCipherSuite) {
		t.Errorf("unknown suite: %v", err)
	}
	tree, _ := newTestTree(t, 3, nil)
	if _, err := tree.Key(3, Application, 0); !errors.Is(err, ErrInvalidLeaf) {
		t.Errorf("leaf 3 of 3: %v", err)
	}
	if _, err := tree.NextKey(0, RatchetType(9)); err == nil {
		t.Error("unknown ratchet type accepted")
	}
	tree.Erase()
	if _, err := tree.Key(0, Application, 0); !errors.Is(err, ErrErased) {
		t.Errorf("erased tree: %v", err)
	}
}

func TestSecretTreeLastGeneration(t *testing.T) {
	tree, _ := newTestTree(t, 1, nil)
	r, err := tree.ratchet(0, Application)
	require.NoError(t, err)
	r.generation = math.MaxUint32 - 1
	for _, g := range []uint32{math.MaxUint32 - 1, math.MaxUint32} {
		if k, err := tree.NextKey(0, Application); err != nil || k.Generation != g {
			t.Fatalf("NextKey = %v, %v; want generation %d", k, err, g)
		}
	}
	if r.secret != nil {
		t.Error("the ratchet kept a secret past the last generation")
	}
	if _, err := tree.NextKey(0, Application); !errors.Is(err, ErrKeyConsumed) {
		t.Errorf("past the last generation: %v", err)
	}
}

func TestRedacted(t *testing.T) {
	es := (&EpochSecret{suite: testSuite, secret: testSecret(testSuite, 1)}).Derive()
	tree, _ := newTestTree(t, 2, nil)
	k, _ := tree.NextKey(0, Application)
	init, _ := NewInitSecret(testSuite, testSecret(testSuite, 3))
	j := init.JoinerSecret(nil, nil)
	for _, v := range []any{es, tree, init, j, j.WelcomeSecret(nil), j.EpochSecret(nil, nil), k} {
		for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
			out := fmt.Sprintf(verb, v)
			if !bytes.Contains([]byte(out), []byte("[redacted]")) {
				t.Errorf("%T printed with %s as %q", v, verb, out)
			}
		}
	}
}
