package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// twoMembers returns a group of alice and bob, seen from each, with cfg
// applied to bob.
func twoMembers(t *testing.T, cfg *Config) (alice, bob *member) {
	t.Helper()
	cs := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	alice, bob = newMember(t, cs, "alice"), newMember(t, cs, "bob")
	var err error
	if alice.g, err = NewGroup(cs, alice.cred, alice.sig, nil, nil); err != nil {
		t.Fatal(err)
	}
	kp := bob.keyPackage(t, cs)
	pc, err := alice.g.Commit(&CommitOptions{Add: []*KeyPackage{kp.KeyPackage}})
	require.NoError(t, err)
	require.NoError(t, alice.g.MergePendingCommit(pc))
	if bob.g, err = Join(pc.Welcome, kp, nil, cfg); err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

func encrypt(t *testing.T, g *Group, text string) *MLSMessage {
	t.Helper()
	m, err := g.EncryptApplication([]byte(text), nil)
	require.NoError(t, err)
	return transmit(t, m)
}

func TestOutOfOrderWindow(t *testing.T) {
	alice, bob := twoMembers(t, &Config{MaxForwardDistance: 10, OutOfOrderTolerance: 3})
	var msgs []*MLSMessage
	for i := range 20 {
		msgs = append(msgs, encrypt(t, alice.g, string(rune('a'+i))))
	}
	// Generation 15 is beyond the forward distance of 10.
	if _, err := bob.g.Process(msgs[15]); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("too far ahead: %v", err)
	}
	// Generation 5 skips 0-4; the three newest skipped (2, 3, 4) are kept.
	if res, err := bob.g.Process(msgs[5]); err != nil || string(res.ApplicationData) != "f" {
		t.Fatalf("generation 5: %v", err)
	}
	for _, i := range []int{4, 3, 2} {
		if _, err := bob.g.Process(msgs[i]); err != nil {
			t.Fatalf("late generation %d inside the window: %v", i, err)
		}
	}
	for _, i := range []int{1, 0, 5, 4} {
		if _, err := bob.g.Process(msgs[i]); !errors.Is(err, ErrKeyUsed) {
			t.Fatalf("generation %d outside the window or used: %v", i, err)
		}
	}
	// Now 15 is within reach.
	if _, err := bob.g.Process(msgs[15]); err != nil {
		t.Fatalf("generation 15 after catching up: %v", err)
	}
}

func TestPastEpochs(t *testing.T) {
	alice, bob := twoMembers(t, &Config{PastEpochs: 2})
	var late []*MLSMessage
	for range 4 {
		late = append(late, encrypt(t, alice.g, "from an old epoch"))
		pc, err := alice.g.Commit(&CommitOptions{ForcePath: true})
		require.NoError(t, err)
		deliverCommit(t, alice, pc, []*member{alice, bob})
	}
	// Bob is four epochs further; he keeps two past epochs.
	for i, m := range late {
		_, err := bob.g.Process(m)
		switch {
		case i >= 2 && err != nil:
			t.Fatalf("message of kept epoch %d: %v", m.Epoch(), err)
		case i < 2 && (!errors.Is(err, ErrEpochTooOld) || !errors.Is(err, ErrWrongEpoch)):
			t.Fatalf("message of dropped epoch %d: %v", m.Epoch(), err)
		}
	}
	// A handshake message of a past epoch is refused.
	prop, err := alice.g.ProposeUpdate()
	require.NoError(t, err)
	pc, err := alice.g.Commit(&CommitOptions{ForcePath: true, SkipCached: true})
	require.NoError(t, err)
	deliverCommit(t, alice, pc, []*member{alice, bob})
	if _, err := bob.g.Process(transmit(t, prop)); !errors.Is(err, ErrEpochTooOld) {
		t.Fatalf("proposal of a past epoch: %v", err)
	}
}

func TestPadding(t *testing.T) {
	alice, bob := twoMembers(t, nil)
	alice.g.cfg.PaddingBlock = 256
	sizes := map[int]bool{}
	for _, n := range []int{0, 1, 100, 150} {
		m := encrypt(t, alice.g, string(bytes.Repeat([]byte("x"), n)))
		sizes[len(m.PrivateMessage.Ciphertext)] = true
		res, err := bob.g.Process(m)
		if err != nil || len(res.ApplicationData) != n {
			t.Fatalf("padded message of %d bytes: %v", n, err)
		}
	}
	if len(sizes) != 1 {
		t.Fatalf("padding to 256 bytes gave ciphertext sizes %v", sizes)
	}
}

func TestHooks(t *testing.T) {
	alice, bob := twoMembers(t, nil)
	errNo := errors.New("not today")
	bob.g.cfg.ValidateCredential = func(c *Credential, _ []byte) error {
		if string(c.Identity) == "alice" {
			return errNo
		}
		return nil
	}
	if _, err := bob.g.Process(encrypt(t, alice.g, "hi")); !errors.Is(err, errNo) {
		t.Fatalf("credential hook: %v", err)
	}
	bob.g.cfg.ValidateCredential = nil
	bob.g.cfg.ProposalPolicy = func(p *Proposal, _ Sender) error {
		if p.Type == ProposalTypeRemove {
			return errNo
		}
		return nil
	}
	prop, err := alice.g.ProposeRemove(1)
	require.NoError(t, err)
	var ve *ValidationError
	if _, err := bob.g.Process(transmit(t, prop)); !errors.Is(err, errNo) || !errors.As(err, &ve) {
		t.Fatalf("proposal policy: %v", err)
	}
}

func TestExporter(t *testing.T) {
	alice, bob := twoMembers(t, nil)
	a, err := alice.g.Export("chat/attachments", []byte("ctx"), 32)
	require.NoError(t, err)
	b, err := bob.g.Export("chat/attachments", []byte("ctx"), 32)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("exported secrets differ: %v", err)
	}
	c, _ := bob.g.Export("chat/other", []byte("ctx"), 32)
	if bytes.Equal(a, c) {
		t.Fatal("different labels gave the same secret")
	}
}
