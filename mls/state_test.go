package mls

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/treekem"
)

var updateFixture = flag.Bool("update-fixture", false, "rewrite the group state fixtures in testdata/state")

// reload saves and loads m's group, checks that the reloaded group encodes
// to the same bytes, and replaces m's group with it.
func reload(t testing.TB, m *member, cfg *Config) []byte {
	t.Helper()
	state, err := m.g.MarshalState()
	require.NoError(t, err)
	g, err := LoadGroup(state, cfg)
	require.NoError(t, err, "%s: loading state", m.name)
	again, err := g.MarshalState()
	require.NoError(t, err)
	require.Equal(t, again, state)
	m.g = g
	return state
}

func process(t testing.TB, m *member, msg *MLSMessage) *Processed {
	t.Helper()
	res, err := m.g.Process(transmit(t, msg))
	require.NoError(t, err, "%s", m.name)
	return res
}

func TestStateRoundTrip(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			testStateRoundTrip(t, cs)
		})
	}
}

// testStateRoundTrip reloads every member after every step of a group's
// life, with state in every part of the encoding: past epochs, skipped
// message keys, cached proposals, pending Update keys, resumption PSKs.
func testStateRoundTrip(t *testing.T, cs CipherSuite) {
	alice, bob, carol := newMember(t, cs, "alice"), newMember(t, cs, "bob"), newMember(t, cs, "carol")
	ms := []*member{alice, bob, carol}
	var err error
	alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil)
	require.NoError(t, err)
	reload(t, alice, nil)
	kps := []*KeyPackagePrivate{bob.keyPackage(t, cs), carol.keyPackage(t, cs)}
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kps[0].KeyPackage, kps[1].KeyPackage}})
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	for i, m := range []*member{bob, carol} {
		if m.g, err = Join(transmit(t, pc.Welcome), kps[i], nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		reload(t, m, nil)
	}
	checkAgreement(t, ms)

	// Bob sends three messages in epoch 1; Alice reads only the last, so
	// she keeps the keys of the first two.
	var late []*MLSMessage
	for i := range 3 {
		msg, err := bob.g.EncryptApplication(fmt.Appendf(nil, "epoch 1 message %d", i), nil)
		require.NoError(t, err)
		late = append(late, msg)
	}
	process(t, alice, late[2])
	// Carol proposes an Update; Alice caches it; Carol keeps its key.
	prop, err := carol.g.ProposeUpdate()
	require.NoError(t, err)
	process(t, alice, prop)
	process(t, bob, prop)
	for _, m := range ms {
		reload(t, m, nil)
	}
	if _, err := alice.g.Process(transmit(t, late[2])); !errors.Is(err, ErrKeyUsed) {
		t.Fatalf("replay after reload: %v", err)
	}
	process(t, alice, late[0])

	// Alice commits Carol's Update: epoch 1 becomes a past epoch.
	pc, err = alice.g.Commit(nil)
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	for _, m := range ms {
		reload(t, m, nil)
	}
	checkAgreement(t, ms)
	// The late message of epoch 1 is still readable, once.
	res := process(t, alice, late[1])
	if string(res.ApplicationData) != "epoch 1 message 1" || res.Epoch != 1 {
		t.Fatalf("late message: %q in epoch %d", res.ApplicationData, res.Epoch)
	}
	reload(t, alice, nil)
	if _, err := alice.g.Process(transmit(t, late[1])); !errors.Is(err, ErrKeyUsed) {
		t.Fatalf("late message replayed after reload: %v", err)
	}

	// A resumption PSK of epoch 1 is still known after reload.
	if _, err := alice.g.lookupPSK(&PreSharedKeyID{PSKType: keyschedule.PSKTypeResumption, PSKGroupID: alice.g.GroupID(), PSKEpoch: 1}); err != nil {
		t.Fatal(err)
	}

	// Bob removes Carol after a tree-changing commit; Carol becomes
	// inactive and stays so after reload.
	pc, err = bob.g.Commit(&CommitOptions{Remove: []LeafIndex{carol.g.OwnLeafIndex()}})
	require.NoError(t, err)
	deliverCommit(t, bob, pc, ms)
	for _, m := range ms {
		reload(t, m, nil)
	}
	if carol.g.Active() {
		t.Fatal("carol active after reload")
	}
	checkAgreement(t, ms)
	if len(alice.g.past) == 0 || alice.g.past[len(alice.g.past)-1].tree.LeafCount() == alice.g.state.tree.LeafCount() {
		t.Fatal("expected a past epoch with a larger tree")
	}

	// A ReInit ends the group; the reloaded group knows it.
	reinit := &ReInitProposal{GroupID: []byte("next group"), Version: MLS10, CipherSuite: cs}
	pc, err = alice.g.Commit(&CommitOptions{Proposals: []Proposal{{Type: ProposalTypeReInit, ReInit: reinit}}})
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	for _, m := range []*member{alice, bob} {
		reload(t, m, nil)
		if r := m.g.PendingReInit(); r == nil || !bytes.Equal(r.GroupID, reinit.GroupID) {
			t.Fatalf("%s: ReInit lost in the state", m.name)
		}
		if _, err := m.g.EncryptApplication([]byte("x"), nil); !errors.Is(err, ErrReInitialized) {
			t.Fatalf("%s: sending after ReInit: %v", m.name, err)
		}
	}
}

// stateFixture is what testdata/state/v1-*.bin holds: the states of two
// members of a group and a message to the first, with its plaintext.
type stateFixture struct {
	alice, bob, message, plaintext []byte
}

func (f *stateFixture) marshal(b *cryptobyte.Builder) {
	for _, v := range [][]byte{f.alice, f.bob, f.message, f.plaintext} {
		wire.AddVarintBytes(b, v)
	}
}

func (f *stateFixture) unmarshal(s *cryptobyte.String) bool {
	return wire.ReadVarintBytes(s, &f.alice) && wire.ReadVarintBytes(s, &f.bob) &&
		wire.ReadVarintBytes(s, &f.message) && wire.ReadVarintBytes(s, &f.plaintext)
}

func fixturePath(cs CipherSuite) string {
	return filepath.Join("testdata", "state", fmt.Sprintf("v%d-%04x.bin", StateVersion, uint16(cs)))
}

// makeFixture builds a group of two in epoch 2 with a past epoch, a
// cached proposal and a message from Bob to Alice.
func makeFixture(t *testing.T, cs CipherSuite) *stateFixture {
	alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
	ms := []*member{alice, bob}
	var err error
	if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil); err != nil {
		t.Fatal(err)
	}
	kp := bob.keyPackage(t, cs)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	if bob.g, err = Join(transmit(t, pc.Welcome), kp, nil, nil); err != nil {
		t.Fatal(err)
	}
	pc, err = bob.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	deliverCommit(t, bob, pc, ms)
	prop, err := bob.g.ProposeUpdate()
	require.NoError(t, err)
	process(t, alice, prop)
	f := &stateFixture{plaintext: []byte("a message stored with the fixture")}
	msg, err := bob.g.EncryptApplication(f.plaintext, nil)
	require.NoError(t, err)
	if f.message, err = msg.Bytes(); err != nil {
		t.Fatal(err)
	}
	if f.alice, err = alice.g.MarshalState(); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = bob.g.MarshalState(); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestStateFixture loads states written by an earlier version of this
// package and checks that the group continues from them. Regenerate the
// fixtures (only when StateVersion changes: old ones must keep loading)
// with go test -run TestStateFixture -update-fixture.
func TestStateFixture(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			path := fixturePath(cs)
			if *updateFixture {
				data := wire.MustMarshal(makeFixture(t, cs).marshal)
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, data, 0o644))
			}
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			var f stateFixture
			require.NoError(t, wire.Parse(data, f.unmarshal))
			alice, bob := &member{name: "alice"}, &member{name: "bob"}
			if alice.g, err = LoadGroup(f.alice, nil); err != nil {
				t.Fatal(err)
			}
			if bob.g, err = LoadGroup(f.bob, nil); err != nil {
				t.Fatal(err)
			}
			if alice.g.Epoch() != 2 || len(alice.g.past) != 2 || len(alice.g.state.proposals) != 1 || len(bob.g.pendingUpdates) != 1 {
				t.Fatal("fixture lacks the expected contents")
			}
			msg, err := ParseMessage(f.message)
			require.NoError(t, err)
			res := process(t, alice, msg)
			require.Equal(t, f.plaintext, res.ApplicationData, "wrong plaintext")
			// The group continues: Alice commits Bob's Update.
			pc, err := alice.g.Commit(nil)
			require.NoError(t, err)
			deliverCommit(t, alice, pc, []*member{alice, bob})
			checkAgreement(t, []*member{alice, bob})
		})
	}
}

// secretsOf returns secrets of the current epoch of g that must be gone
// once the epoch is neither current nor kept: the key-schedule secrets
// (except the resumption PSK, which is kept for its own window), every
// secret of the secret tree (node secrets, ratchet secrets, keys kept for
// out-of-order messages) and the tree private keys.
func secretsOf(t *testing.T, g *Group) map[string][]byte {
	st := g.state
	s := st.secrets
	out := map[string][]byte{
		"sender_data_secret":  s.SenderDataSecret(),
		"exporter_secret":     s.ExporterSecret(),
		"external_secret":     s.ExternalSecret(),
		"confirmation_key":    s.ConfirmationKey(),
		"membership_key":      s.MembershipKey(),
		"init_secret of next": s.NextInit().Bytes(),
	}
	for k, v := range out {
		out[k] = bytes.Clone(v)
	}
	for k, v := range secretTreeSecrets(t, st.framer.secretTree.Bytes()) {
		out[k] = v
	}
	for _, n := range st.priv.Nodes() {
		out[fmt.Sprintf("private key of node %d", n)] = st.priv.Key(n).Bytes()
	}
	return out
}

// secretTreeSecrets extracts the secrets of an encoded secret tree (see
// keyschedule.SecretTree.Bytes for the format).
func secretTreeSecrets(t *testing.T, enc []byte) map[string][]byte {
	out := map[string][]byte{}
	s := cryptobyte.String(enc)
	var nodes, senders cryptobyte.String
	if !s.Skip(1+2+4+4+4) || !wire.ReadVarintPrefixed(&s, &nodes) || !wire.ReadVarintPrefixed(&s, &senders) || !s.Empty() {
		t.Fatal("unexpected secret tree encoding")
	}
	for !nodes.Empty() {
		var n uint32
		var secret []byte
		if !nodes.ReadUint32(&n) || !wire.ReadVarintBytes(&nodes, &secret) {
			t.Fatal("unexpected node secret encoding")
		}
		out[fmt.Sprintf("secret of node %d", n)] = secret
	}
	for !senders.Empty() {
		var leaf uint32
		if !senders.ReadUint32(&leaf) {
			t.Fatal("unexpected sender encoding")
		}
		for _, typ := range []string{"handshake", "application"} {
			var gen uint32
			var present bool
			var skipped cryptobyte.String
			if !senders.ReadUint32(&gen) || !wire.ReadOptional(&senders, &present) {
				t.Fatal("unexpected ratchet encoding")
			}
			if present {
				var secret []byte
				if !wire.ReadVarintBytes(&senders, &secret) {
					t.Fatal("unexpected ratchet encoding")
				}
				out[fmt.Sprintf("%s ratchet secret of leaf %d", typ, leaf)] = secret
			}
			if !wire.ReadVarintPrefixed(&senders, &skipped) {
				t.Fatal("unexpected ratchet encoding")
			}
			for !skipped.Empty() {
				var g uint32
				var key, nonce []byte
				if !skipped.ReadUint32(&g) || !wire.ReadVarintBytes(&skipped, &key) || !wire.ReadVarintBytes(&skipped, &nonce) {
					t.Fatal("unexpected skipped key encoding")
				}
				out[fmt.Sprintf("skipped %s key %d of leaf %d", typ, g, leaf)] = key
			}
		}
	}
	return out
}

// TestStateForwardSecrecy checks that a state saved after an epoch change
// holds no secret of an epoch beyond the past-epoch window, by searching
// the encoding for each of them.
func TestStateForwardSecrecy(t *testing.T) {
	for _, window := range []int{-1, 1, 2} {
		t.Run(fmt.Sprintf("past-epochs=%d", window), func(t *testing.T) {
			cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
			cfg := &Config{PastEpochs: window}
			alice, bob := newMember(t, cs, "alice"), newMember(t, cs, "bob")
			ms := []*member{alice, bob}
			var err error
			if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, cfg); err != nil {
				t.Fatal(err)
			}
			kp := bob.keyPackage(t, cs)
			pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
			require.NoError(t, err)
			deliverCommit(t, alice, pc, ms)
			if bob.g, err = Join(transmit(t, pc.Welcome), kp, nil, cfg); err != nil {
				t.Fatal(err)
			}
			kept := max(window, 0)
			var epochs []map[string][]byte // secrets of epoch i+1
			for range kept + 2 {
				// Bob sends three messages; Alice reads the last, keeping the
				// keys of the other two.
				var msg *MLSMessage
				for range 3 {
					if msg, err = bob.g.EncryptApplication([]byte("x"), nil); err != nil {
						t.Fatal(err)
					}
				}
				process(t, alice, msg)
				epochs = append(epochs, secretsOf(t, alice.g))
				pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
				require.NoError(t, err)
				deliverCommit(t, alice, pc, ms)
			}
			state := reload(t, alice, cfg)
			now := alice.g.Epoch()
			for i, secrets := range epochs {
				epoch := uint64(i + 1)
				retained := now-epoch <= uint64(kept)
				for name, v := range secrets {
					found := bytes.Contains(state, v)
					// A kept past epoch keeps only what reads late messages.
					readsLate := name == "sender_data_secret" || strings.HasPrefix(name, "skipped") ||
						strings.HasPrefix(name, "secret of node") || strings.Contains(name, "ratchet secret")
					switch {
					case found && !(retained && readsLate):
						t.Errorf("state of epoch %d holds %s of epoch %d", now, name, epoch)
					case !found && retained && strings.HasPrefix(name, "skipped"):
						// Positive control: the keys of a kept epoch are
						// there, so the search finds what it looks for.
						t.Errorf("state of epoch %d lacks %s of kept epoch %d", now, name, epoch)
					}
				}
			}
		})
	}
}

// TestLoadGroupSmallerWindow loads a state with a configuration that
// keeps fewer past epochs than the state holds: the oldest are dropped.
func TestLoadGroupSmallerWindow(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice := newMember(t, cs, "alice")
	var err error
	if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil); err != nil {
		t.Fatal(err)
	}
	var oldest map[string][]byte
	for i := range DefaultPastEpochs {
		if i == 0 {
			oldest = secretTreeSecrets(t, alice.g.state.framer.secretTree.Bytes())
		}
		pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		require.NoError(t, alice.g.MergePendingCommit(pc))
	}
	state, err := alice.g.MarshalState()
	require.NoError(t, err)
	g, err := LoadGroup(state, &Config{PastEpochs: 1, ResumptionPSKEpochs: 1})
	require.NoError(t, err)
	if len(g.past) != 1 || g.past[0].epoch != g.Epoch()-1 || len(g.resumption) != 1 {
		t.Fatalf("%d past epochs, %d resumption PSKs", len(g.past), len(g.resumption))
	}
	again, err := g.MarshalState()
	require.NoError(t, err)
	for name, v := range oldest {
		if !bytes.Contains(state, v) {
			t.Fatalf("%s of epoch 0 not in the original state", name)
		}
		if bytes.Contains(again, v) {
			t.Fatalf("%s of epoch 0 kept", name)
		}
	}
}

func TestLoadGroupErrors(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	f := makeFixture(t, cs)
	state := f.alice
	check := func(what string, data []byte, resealed bool) {
		t.Helper()
		var g *Group
		var err error
		if resealed {
			if len(data) < 6 {
				return
			}
			g, err = parseState(data, nil)
		} else {
			g, err = LoadGroup(data, nil)
		}
		if err == nil {
			if !resealed {
				t.Fatalf("%s: loaded", what)
			}
			return
		}
		if g != nil || !errors.Is(err, ErrInvalidState) {
			t.Fatalf("%s: %v (group %v)", what, err, g != nil)
		}
	}
	for n := range len(state) {
		check(fmt.Sprintf("truncated to %d", n), state[:n], false)
	}
	body := state[:len(state)-sha256.Size]
	for n := range len(body) {
		// With a valid checksum, the decoder itself must find the end.
		check(fmt.Sprintf("body truncated to %d", n), body[:n], true)
	}
	for range 2000 {
		c := bytes.Clone(state)
		var r [4]byte
		rand.Read(r[:])
		i := int(uint32(r[0])|uint32(r[1])<<8|uint32(r[2])<<16) % len(c)
		c[i] ^= 1 << (r[3] % 8)
		check(fmt.Sprintf("bit flip at %d", i), c, false)
		check(fmt.Sprintf("bit flip at %d", i), c[:len(c)-sha256.Size], true)
	}
	check("trailing data", append(bytes.Clone(body), 0), true)
	v2 := bytes.Clone(body)
	v2[5] = 2
	if _, err := parseState(v2, nil); !errors.Is(err, ErrUnsupported) || !errors.Is(err, ErrInvalidState) {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := LoadGroup(nil, nil); !errors.Is(err, ErrInvalidState) {
		t.Fatal(err)
	}
}

func reseal(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(bytes.Clone(body), sum[:]...)
}

func FuzzLoadGroup(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "state", "*.bin"))
	if len(paths) == 0 {
		f.Fatal("no state fixtures found")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var fx stateFixture
		if err := wire.Parse(data, fx.unmarshal); err != nil {
			f.Fatal(err)
		}
		f.Add(fx.alice)
		f.Add(fx.bob)
	}
	// Windows large enough that loading never drops anything.
	cfg := &Config{PastEpochs: 1 << 20, ResumptionPSKEpochs: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, reseal(data[:max(0, len(data)-sha256.Size)])} {
			g, err := LoadGroup(in, cfg)
			if err != nil {
				if g != nil || !errors.Is(err, ErrInvalidState) {
					t.Fatalf("%v (group %v)", err, g != nil)
				}
				continue
			}
			out, err := g.MarshalState()
			require.NoError(t, err)
			require.Equal(t, in, out, "loaded state re-encodes differently")
		}
	})
}

func TestKeyPackagePrivateBytes(t *testing.T) {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	kp := newMember(t, cs, "bob").keyPackage(t, cs)
	data, err := kp.Bytes()
	require.NoError(t, err)
	got, err := ParseKeyPackagePrivate(data)
	require.NoError(t, err)
	again, _ := got.Bytes()
	require.Equal(t, data, again, "re-encodes differently")
	other := newMember(t, cs, "eve").keyPackage(t, cs)
	mixed := *kp
	mixed.InitKey = other.InitKey
	data2, _ := mixed.Bytes()
	if _, err := ParseKeyPackagePrivate(data2); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("mismatched key: %v", err)
	}
	for n := range len(data) {
		if _, err := ParseKeyPackagePrivate(data[:n]); !errors.Is(err, ErrInvalidState) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

// bigGroup returns a group of n members seen by its member at leaf 0, with
// every parent node set and DefaultPastEpochs past epochs, built without
// n joins: the other leaves and the parent nodes are random (their
// signatures are not checked by the state encoding).
func bigGroup(tb testing.TB, n int) *Group { return bigGroupWith(tb, n, nil) }

// bigGroupWith is bigGroup with the signature key of far, if not nil, in
// the last leaf, so that far can sign messages as that member.
func bigGroupWith(tb testing.TB, n int, far *hpke.SignaturePrivateKey) *Group {
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice := newMember(tb, cs, "alice")
	g, err := NewGroup(cs, alice.cred, alice.sig, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	rnd := func(k int) []byte {
		b := make([]byte, k)
		rand.Read(b)
		return b
	}
	own := g.state.tree.Leaf(0)
	caps := own.Capabilities
	enc := wire.MustMarshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			leaves := 1
			for leaves < n {
				leaves *= 2
			}
			// Every node up to the last leaf is set, so the encoding
			// ends with a non-blank node and has an odd length
			// (§12.4.3.3).
			for i := range min(2*leaves-1, 2*n-1) {
				switch {
				case i == 0:
					b.AddUint8(1)
					b.AddUint8(uint8(treekem.NodeTypeLeaf))
					own.Marshal(b)
				case i%2 == 0:
					l := &LeafNode{
						EncryptionKey: rnd(32), SignatureKey: rnd(32),
						Credential:   Credential{Type: CredentialBasic, Identity: fmt.Appendf(nil, "member-%d@example.com", i/2)},
						Capabilities: caps, Source: treekem.SourceCommit, ParentHash: rnd(32), Signature: rnd(64),
					}
					if far != nil && i/2 == n-1 {
						l.SignatureKey = far.PublicKey()
					}
					b.AddUint8(1)
					b.AddUint8(uint8(treekem.NodeTypeLeaf))
					l.Marshal(b)
				default:
					p := &treekem.ParentNode{EncryptionKey: rnd(32), ParentHash: rnd(32)}
					b.AddUint8(1)
					b.AddUint8(uint8(treekem.NodeTypeParent))
					p.Marshal(b)
				}
			}
		})
	})
	tree, err := treekem.ParseTree(cs, enc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := g.state.ctx
	ctx.TreeHash = tree.TreeHash()
	init, err := keyschedule.GenerateInitSecret(cs)
	if err != nil {
		tb.Fatal(err)
	}
	ctxBytes := ctx.Bytes()
	es := init.JoinerSecret(nil, ctxBytes).EpochSecret(nil, ctxBytes)
	secrets := es.Derive()
	interim := keyschedule.InterimTranscriptHash(cs, ctx.ConfirmedTranscriptHash, secrets.ConfirmationTag(ctx.ConfirmedTranscriptHash))
	if g.state, err = g.newEpochState(ctx, tree, g.state.priv, secrets, interim); err != nil {
		tb.Fatal(err)
	}
	for range DefaultPastEpochs {
		pc, err := g.Commit(&CommitOptions{ForcePath: true})
		if err != nil {
			tb.Fatal(err)
		}
		if err := g.MergePendingCommit(pc); err != nil {
			tb.Fatal(err)
		}
	}
	return g
}

func BenchmarkState(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		g := bigGroup(b, n)
		state, err := g.MarshalState()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("encode/members=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := g.MarshalState(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(state))/float64(n), "B/member")
		})
		b.Run(fmt.Sprintf("decode/members=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := LoadGroup(state, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(state))/float64(n), "B/member")
		})
	}
}

func TestBigGroupState(t *testing.T) {
	g := bigGroup(t, 100)
	state, err := g.MarshalState()
	require.NoError(t, err)
	g2, err := LoadGroup(state, nil)
	require.NoError(t, err)
	if g2.MemberCount() != 100 || len(g2.past) != DefaultPastEpochs {
		t.Fatalf("%d members, %d past epochs", g2.MemberCount(), len(g2.past))
	}
	// The past trees cost a few nodes each, not a whole tree.
	withoutPast := *g
	withoutPast.past = nil
	small, err := withoutPast.MarshalState()
	require.NoError(t, err)
	if extra := len(state) - len(small); extra > len(small)/4 {
		t.Fatalf("past epochs cost %d bytes on a state of %d", extra, len(small))
	}
}

// TestMarshalMergedState checks that the state saved before sending a
// commit is the state the group has after merging it, and that saving it
// changes nothing.
func TestMarshalMergedState(t *testing.T) {
	alice, bob := twoMembers(t, nil)
	for range 5 { // fill the past-epoch window
		pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		deliverCommit(t, alice, pc, []*member{alice, bob})
	}
	late := encrypt(t, bob.g, "late")
	pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	before, err := alice.g.MarshalState()
	require.NoError(t, err)
	merged, err := alice.g.MarshalMergedState(pc.Staged())
	require.NoError(t, err)
	if after, _ := alice.g.MarshalState(); !bytes.Equal(before, after) {
		t.Fatal("MarshalMergedState changed the group")
	}
	deliverCommit(t, alice, pc, []*member{alice, bob})
	real, err := alice.g.MarshalState()
	require.NoError(t, err)
	require.Equal(t, real, merged, "the merged state differs from the state after merging")
	// The saved state works: it reads a late message of the past epoch and
	// follows the group.
	g, err := LoadGroup(merged, nil)
	require.NoError(t, err)
	if res, err := g.Process(late); err != nil || string(res.ApplicationData) != "late" {
		t.Fatalf("late message: %v", err)
	}
	require.Equal(t, bob.g.EpochAuthenticator(), g.EpochAuthenticator(), "loaded state disagrees with bob")
}
