package mls

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
)

// pqTestBase is the first private-use code point (RFC 9420, Section 17.1)
// under which these tests register hpke.PostQuantumSuites().
const pqTestBase = 0xF100

func init() {
	for i, def := range hpke.PostQuantumSuites() {
		if err := RegisterCipherSuite(CipherSuite(pqTestBase+i), def); err != nil {
			panic(err)
		}
	}
}

// pqSuites returns the code points of the registered PQ suites.
func pqSuites() []CipherSuite {
	var out []CipherSuite
	for i := range hpke.PostQuantumSuites() {
		out = append(out, CipherSuite(pqTestBase+i))
	}
	return out
}

// pqSuite returns the code point the tests registered def under.
func pqSuite(t testing.TB, def SuiteDefinition) CipherSuite {
	t.Helper()
	for _, cs := range pqSuites() {
		if d, _ := cs.Definition(); d == def {
			return cs
		}
	}
	t.Fatalf("%s is not registered", def.Name)
	return 0
}

// TestPQGroupLifecycle runs every post-quantum suite (the eleven of
// draft-ietf-mls-pq-ciphersuites and the deployed ones) through the group
// lifecycle (create, add with and without the tree in the Welcome, update
// by proposal and by commit, remove, application messages), external join
// and resync, and a state round trip.
func TestPQGroupLifecycle(t *testing.T) {
	for _, cs := range pqSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			t.Run("lifecycle", func(t *testing.T) { testGroupLifecycle(t, cs) })
			t.Run("external", func(t *testing.T) { testExternalJoinAndResync(t, cs) })
			t.Run("state", func(t *testing.T) { testPQState(t, cs) })
		})
	}
}

// TestPQReInit moves a group from suite 1 to every post-quantum suite with
// a ReInit (RFC 9420, Section 11.2), and one back.
func TestPQReInit(t *testing.T) {
	for i, to := range pqSuites() {
		t.Run(fmt.Sprintf("%v-to-%v", MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, to), func(t *testing.T) {
			t.Parallel()
			testReInit(t, MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, to, i == 0)
		})
	}
	from := pqSuite(t, hpke.MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87)
	t.Run(fmt.Sprintf("%v-to-%v", from, MLS_256_DHKEMP384_AES256GCM_SHA384_P384), func(t *testing.T) {
		t.Parallel()
		testReInit(t, from, MLS_256_DHKEMP384_AES256GCM_SHA384_P384, false)
	})
}

// TestPQRandomOperations drives the X-Wing/Ed25519 and the
// ML-KEM-1024/ML-DSA-87 suites through random operations.
func TestPQRandomOperations(t *testing.T) {
	steps := 16
	if testing.Short() {
		steps = 6
	}
	for _, def := range []SuiteDefinition{hpke.MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519,
		hpke.MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87} {
		cs := pqSuite(t, def)
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			testRandomOperations(t, cs, steps, uint64(cs))
		})
	}
}

// testPQState stores a group of suite cs and loads it back: the state
// records the suite's code point, which must be registered when the state
// is loaded.
func testPQState(t *testing.T, cs CipherSuite) {
	ms := m6Group(t, cs, nil, nil, nil, "alice", "bob")
	state, err := ms[1].g.MarshalState()
	require.NoError(t, err)
	loaded, err := LoadGroup(state, nil)
	require.NoError(t, err)
	assert.Equal(t, cs, loaded.CipherSuite())
	ms[1].g = loaded
	agree(t, ms)

	// The record store (SaveGroup/OpenGroup) too, after another commit.
	pc, err := ms[0].g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	deliverCommit(t, ms[0], pc, ms)
	for _, m := range ms {
		reopen(t, NewMemoryStore(), m) // each member has its own store
		assert.Equal(t, cs, m.g.CipherSuite())
	}
	agree(t, ms)

	// The same state under a code point nobody registered is refused.
	off := len(stateMagic) + 2
	require.Equal(t, uint16(cs), binary.BigEndian.Uint16(state[off:]))
	other := bytes.Clone(state)
	binary.BigEndian.PutUint16(other[off:], 0xF0FE)
	body := other[:len(other)-stateChecksumSize]
	sum := sha256.Sum256(body)
	copy(other[len(body):], sum[:])
	_, err = LoadGroup(other, nil)
	assert.ErrorIs(t, err, ErrInvalidState)
	assert.ErrorIs(t, err, ErrUnsupported)
}

// TestPQSizesOnTheWire checks that messages of the suites with the largest
// keys and signatures (ML-KEM-1024 ciphertexts and keys of 1,568 bytes,
// ML-DSA-87 keys of 2,592 and signatures of 4,627 bytes) parse and
// re-encode byte for byte.
func TestPQSizesOnTheWire(t *testing.T) {
	cs := pqSuite(t, hpke.MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87)
	m := newMember(t, cs, "alice")
	kp := m.keyPackage(t, cs)
	assert.Len(t, kp.KeyPackage.InitKey, 1568)
	assert.Len(t, kp.KeyPackage.Signature, 4627)
	assert.Len(t, kp.KeyPackage.LeafNode.SignatureKey, 2592)
	msg := &MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp.KeyPackage}
	b, err := msg.Bytes()
	require.NoError(t, err)
	back, err := ParseMessage(b)
	require.NoError(t, err)
	b2, err := back.Bytes()
	require.NoError(t, err)
	assert.Equal(t, b, b2)
	require.NoError(t, back.KeyPackage.verifyBasic())
}

// pqSeedNames are the committed fuzz seeds of the ML-KEM-1024/ML-DSA-87
// suite: messages whose keys, KEM outputs and signatures have the largest
// PQ sizes, so that every parser fuzz target (which loads
// testdata/fuzz/seeds/<kind>-*) starts from them.
var pqSeedNames = []string{"message-pq-keypackage", "message-pq-welcome", "message-pq-groupinfo",
	"message-pq-commit", "commit-pq-path", "proposal-pq-add"}

// TestPQFuzzSeeds checks that the PQ fuzz seeds load and parse to
// byte-identical re-encodings; MLS_WRITE_PQ_SEEDS=1 regenerates them.
func TestPQFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "seeds")
	if os.Getenv("MLS_WRITE_PQ_SEEDS") == "1" {
		writePQSeeds(t, dir)
	}
	for _, name := range pqSeedNames {
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		switch {
		case strings.HasPrefix(name, "message-"):
			checkParse(t, data, ParseMessage, (*MLSMessage).Bytes)
			_, err = ParseMessage(data)
		case strings.HasPrefix(name, "commit-"):
			checkParse(t, data, ParseCommit, (*Commit).Bytes)
			_, err = ParseCommit(data)
		default:
			checkParse(t, data, ParseProposal, (*Proposal).Bytes)
			_, err = ParseProposal(data)
		}
		require.NoError(t, err, name)
	}
}

func writePQSeeds(t *testing.T, dir string) {
	cs := pqSuite(t, hpke.MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87)
	ms := m6Group(t, cs, nil, nil, nil, "alice", "bob", "carol")
	dave := newMember(t, cs, "dave")
	kp := dave.keyPackage(t, cs)
	pc, err := ms[0].g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}, ForcePath: true})
	require.NoError(t, err)
	gi, err := ms[0].g.GroupInfo(&GroupInfoOptions{ExternalPub: true})
	require.NoError(t, err)
	enc := func(f func() ([]byte, error)) []byte {
		b, err := f()
		require.NoError(t, err)
		return b
	}
	commit := pc.Commit.PublicMessage.Content.Commit
	require.NotNil(t, commit.Path)
	seeds := map[string][]byte{
		"message-pq-keypackage": enc((&MLSMessage{Version: MLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp.KeyPackage}).Bytes),
		"message-pq-welcome":    enc(pc.Welcome.Bytes),
		"message-pq-groupinfo":  enc(gi.Bytes),
		"message-pq-commit":     enc(pc.Commit.Bytes),
		"commit-pq-path":        enc(commit.Bytes),
		"proposal-pq-add":       enc((&Proposal{Type: ProposalTypeAdd, Add: &AddProposal{KeyPackage: *kp.KeyPackage}}).Bytes),
	}
	for name, b := range seeds {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	// The treekem parser fuzz targets take Go fuzz corpus files.
	corpus := func(target string, args ...string) {
		body := "go test fuzz v1\n" + strings.Join(args, "\n") + "\n"
		require.NoError(t, os.WriteFile(filepath.Join("..", "treekem", "testdata", "fuzz", target, "pq-mlkem1024-mldsa87"), []byte(body), 0o644))
	}
	corpus("FuzzParseLeafNode", "uint16(1)", "[]byte("+strconv.Quote(string(kp.KeyPackage.LeafNode.Bytes()))+")")
	corpus("FuzzParseUpdatePath", "[]byte("+strconv.Quote(string(commit.Path.Bytes()))+")")
}
