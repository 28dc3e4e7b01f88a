package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
)

// member is one client in a test: its group state and its keys.
type member struct {
	name string
	sig  *hpke.SignaturePrivateKey
	cred Credential
	g    *Group
}

func newMember(t testing.TB, cs CipherSuite, name string) *member {
	t.Helper()
	sig, err := cs.GenerateSignatureKey()
	require.NoError(t, err)
	return &member{name: name, sig: sig, cred: Credential{Type: CredentialBasic, Identity: []byte(name)}}
}

func (m *member) keyPackage(t testing.TB, cs CipherSuite) *KeyPackagePrivate {
	t.Helper()
	kp, err := GenerateKeyPackage(cs, m.cred, m.sig, nil)
	require.NoError(t, err)
	return kp
}

// transmit encodes and decodes a message, as the delivery service would.
func transmit(t testing.TB, m *MLSMessage) *MLSMessage {
	t.Helper()
	data, err := m.Bytes()
	require.NoError(t, err)
	out, err := ParseMessage(data)
	require.NoError(t, err)
	return out
}

// deliverCommit merges a pending commit at its sender and processes it at
// every other member of ms; members removed by it become inactive.
func deliverCommit(t testing.TB, committer *member, pc *PendingCommit, ms []*member) {
	t.Helper()
	msg := transmit(t, pc.Commit)
	for _, m := range ms {
		if m == committer || m.g == nil || !m.g.Active() {
			continue
		}
		res, err := m.g.Process(msg)
		require.NoError(t, err, "%s processing commit", m.name)
		require.NoError(t, m.g.Merge(res.Commit))
	}
	require.NoError(t, committer.g.MergePendingCommit(pc))
}

// checkAgreement checks that every active member is in the same epoch
// with the same tree hash and epoch authenticator, and can read every
// other member's messages.
func checkAgreement(t testing.TB, ms []*member) {
	t.Helper()
	var ref *member
	for _, m := range ms {
		if m.g == nil || !m.g.Active() {
			continue
		}
		if ref == nil {
			ref = m
			continue
		}
		if m.g.Epoch() != ref.g.Epoch() || !bytes.Equal(m.g.TreeHash(), ref.g.TreeHash()) ||
			!bytes.Equal(m.g.EpochAuthenticator(), ref.g.EpochAuthenticator()) {
			t.Fatalf("%s and %s disagree at epoch %d/%d", m.name, ref.name, m.g.Epoch(), ref.g.Epoch())
		}
	}
	for _, s := range ms {
		if s.g == nil || !s.g.Active() {
			continue
		}
		text := []byte(fmt.Sprintf("hello from %s in epoch %d", s.name, s.g.Epoch()))
		msg, err := s.g.EncryptApplication(text, []byte("ad"))
		require.NoError(t, err)
		wire := transmit(t, msg)
		for _, r := range ms {
			if r == s || r.g == nil || !r.g.Active() {
				continue
			}
			res, err := r.g.Process(wire)
			require.NoError(t, err, "%s reading %s", r.name, s.name)
			if !bytes.Equal(res.ApplicationData, text) || res.Sender.Index != uint32(s.g.OwnLeafIndex()) {
				t.Fatalf("%s read the wrong message from %s", r.name, s.name)
			}
		}
	}
}

func TestGroupLifecycle(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			t.Parallel()
			testGroupLifecycle(t, cs)
		})
	}
}

func testGroupLifecycle(t *testing.T, cs CipherSuite) {
	alice, bob, carol := newMember(t, cs, "alice"), newMember(t, cs, "bob"), newMember(t, cs, "carol")
	var err error
	alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil)
	require.NoError(t, err)
	ms := []*member{alice, bob, carol}

	// Alice adds Bob.
	bobKP := bob.keyPackage(t, cs)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{bobKP.KeyPackage}})
	require.NoError(t, err)
	if alice.g.Epoch() != 0 {
		t.Fatal("Commit changed the epoch before merge")
	}
	deliverCommit(t, alice, pc, ms)
	bob.g, err = Join(transmit(t, pc.Welcome), bobKP, nil, nil)
	require.NoError(t, err, "bob joining")
	checkAgreement(t, ms)

	// Bob adds Carol with the tree sent out of band.
	carolKP := carol.keyPackage(t, cs)
	pc, err = bob.g.Commit(&CommitOptions{Add: []*KeyPackage{carolKP.KeyPackage}, RatchetTreeOutOfBand: true})
	require.NoError(t, err)
	deliverCommit(t, bob, pc, ms)
	if _, err := Join(transmit(t, pc.Welcome), carolKP, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("join without the tree: %v", err)
	}
	carol.g, err = Join(transmit(t, pc.Welcome), carolKP, &JoinOptions{RatchetTree: bob.g.RatchetTree()}, nil)
	require.NoError(t, err, "carol joining")
	checkAgreement(t, ms)

	// Carol updates by proposal, Alice commits it.
	prop, err := carol.g.ProposeUpdate()
	require.NoError(t, err)
	for _, m := range []*member{alice, bob} {
		if _, err := m.g.Process(transmit(t, prop)); err != nil {
			t.Fatal(err)
		}
	}
	pc, err = alice.g.Commit(nil)
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	checkAgreement(t, ms)

	// Bob refreshes his keys with an empty commit.
	pc, err = bob.g.Commit(&CommitOptions{ForcePath: true})
	require.NoError(t, err)
	deliverCommit(t, bob, pc, ms)
	checkAgreement(t, ms)

	// Alice removes Bob; Bob can no longer read.
	pc, err = alice.g.Commit(&CommitOptions{Remove: []LeafIndex{bob.g.OwnLeafIndex()}})
	require.NoError(t, err)
	deliverCommit(t, alice, pc, ms)
	if bob.g.Active() {
		t.Fatal("bob still active after removal")
	}
	checkAgreement(t, ms)
	msg, err := carol.g.EncryptApplication([]byte("secret after bob left"), nil)
	require.NoError(t, err)
	if _, err := bob.g.Process(transmit(t, msg)); err == nil {
		t.Fatal("removed member read a message")
	}
}
