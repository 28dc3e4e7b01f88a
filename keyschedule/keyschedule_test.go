package keyschedule

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
)

func testEpoch(t *testing.T, cs hpke.CipherSuite) (*EpochSecrets, []byte) {
	t.Helper()
	init, err := GenerateInitSecret(cs)
	require.NoError(t, err)
	gc := (&GroupContext{Version: MLS10, CipherSuite: cs, GroupID: []byte("group"), TreeHash: testSecret(cs, 2)}).Bytes()
	j := init.JoinerSecret(nil, gc)
	return j.EpochSecret(nil, gc).Derive(), gc
}

func TestExternalInit(t *testing.T) {
	for _, cs := range hpke.CipherSuites() {
		t.Run(cs.String(), func(t *testing.T) {
			s, _ := testEpoch(t, cs)
			priv, err := s.ExternalKeyPair()
			require.NoError(t, err)
			kemOutput, joinerInit, err := ExternalInit(cs, priv.PublicKey())
			require.NoError(t, err)
			memberInit, err := s.ExternalInit(kemOutput)
			require.NoError(t, err)
			if len(joinerInit.Bytes()) != cs.HashSize() || !bytes.Equal(joinerInit.Bytes(), memberInit.Bytes()) {
				t.Fatal("joiner and member derived different init secrets")
			}
			other, _ := testEpoch(t, cs)
			if wrong, err := other.ExternalInit(kemOutput); err == nil && bytes.Equal(wrong.Bytes(), joinerInit.Bytes()) {
				t.Fatal("another epoch's external key derived the same init secret")
			}
			if _, err := s.ExternalInit(kemOutput[:1]); err == nil {
				t.Error("truncated kem_output accepted")
			}
		})
	}
}

func TestStages(t *testing.T) {
	cs := testSuite
	if _, err := NewInitSecret(cs, make([]byte, 31)); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("NewInitSecret(31 bytes) = %v", err)
	}
	if _, err := NewJoinerSecret(cs, nil); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("NewJoinerSecret(nil) = %v", err)
	}
	if _, err := GenerateInitSecret(0); !errors.Is(err, hpke.ErrUnsupportedCipherSuite) {
		t.Errorf("GenerateInitSecret(0) = %v", err)
	}
	init, _ := NewInitSecret(cs, testSecret(cs, 1))
	gc := []byte("group context")
	// Empty commit and PSK secrets stand for the all-zero secrets.
	zero := make([]byte, cs.HashSize())
	j1, j2 := init.JoinerSecret(nil, gc), init.JoinerSecret(zero, gc)
	if !bytes.Equal(j1.Bytes(), j2.Bytes()) {
		t.Error("nil commit secret differs from the zero commit secret")
	}
	if bytes.Equal(j1.Bytes(), init.JoinerSecret(testSecret(cs, 9), gc).Bytes()) {
		t.Error("commit secret ignored")
	}
	if bytes.Equal(j1.Bytes(), init.JoinerSecret(nil, []byte("other context")).Bytes()) {
		t.Error("group context ignored")
	}
	if !bytes.Equal(j1.EpochSecret(nil, gc).Bytes(), j1.EpochSecret(zero, gc).Bytes()) {
		t.Error("nil PSK secret differs from the zero PSK secret")
	}
	if bytes.Equal(j1.EpochSecret(nil, gc).Bytes(), j1.EpochSecret(testSecret(cs, 4), gc).Bytes()) {
		t.Error("PSK secret ignored")
	}

	w := j1.WelcomeSecret(nil)
	if want := cs.ExpandWithLabel(w.Bytes(), "key", nil, cs.AEADKeySize()); !bytes.Equal(w.Key(), want) {
		t.Error("welcome key")
	}
	if want := cs.ExpandWithLabel(w.Bytes(), "nonce", nil, cs.AEADNonceSize()); !bytes.Equal(w.Nonce(), want) {
		t.Error("welcome nonce")
	}

	e := j1.EpochSecret(nil, gc)
	s := e.Derive()
	secret := e.Bytes()
	e.Erase()
	if !isZero(secret) || e.Bytes() != nil {
		t.Error("EpochSecret.Erase left the secret")
	}

	// Restore from persisted values.
	r, err := ParseEpochSecrets(s.Bytes())
	require.NoError(t, err)
	if !bytes.Equal(r.Bytes(), s.Bytes()) || !bytes.Equal(r.NextInit().Bytes(), s.NextInit().Bytes()) ||
		!bytes.Equal(r.EncryptionSecret(), s.EncryptionSecret()) {
		t.Error("restored epoch secrets differ")
	}
	a, _ := s.Export("label", []byte("ctx"), 40)
	b, _ := r.Export("label", []byte("ctx"), 40)
	if len(a) != 40 || !bytes.Equal(a, b) {
		t.Error("restored epoch secrets export differently")
	}
	if _, err := s.Export("label", nil, 255*cs.HashSize()+1); !errors.Is(err, ErrInvalidLength) {
		t.Errorf("oversized export: %v", err)
	}
	state := s.Bytes()
	for i := range state {
		if _, err := ParseEpochSecrets(state[:i]); !errors.Is(err, ErrMalformed) && !errors.Is(err, hpke.ErrUnsupportedCipherSuite) {
			t.Fatalf("ParseEpochSecrets(truncated to %d) = %v", i, err)
		}
	}
	if _, err := ParseEpochSecrets(append(state, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseEpochSecrets(trailing byte) = %v", err)
	}

	tag := s.ConfirmationTag([]byte("cth"))
	if !s.VerifyConfirmationTag([]byte("cth"), tag) || s.VerifyConfirmationTag([]byte("cth2"), tag) {
		t.Error("VerifyConfirmationTag")
	}
	if !bytes.Equal(s.MembershipTag([]byte("tbm")), cs.MAC(s.MembershipKey(), []byte("tbm"))) {
		t.Error("MembershipTag")
	}
	k1, n1 := s.SenderDataKey(make([]byte, 100))
	k2, n2 := s.SenderDataKey(make([]byte, cs.HashSize()))
	k3, _ := s.SenderDataKey(make([]byte, 5))
	if !bytes.Equal(k1, k2) || !bytes.Equal(n1, n2) || bytes.Equal(k1, k3) {
		t.Error("sender data key does not sample the first KDF.Nh bytes")
	}

	enc := s.EncryptionSecret()
	tree, err := s.SecretTree(4, nil)
	require.NoError(t, err)
	if !isZero(enc) || s.EncryptionSecret() != nil {
		t.Error("SecretTree did not erase the encryption secret")
	}
	if _, err := s.SecretTree(4, nil); !errors.Is(err, ErrErased) {
		t.Errorf("second SecretTree = %v", err)
	}
	if _, err := tree.NextKey(3, Application); err != nil {
		t.Error(err)
	}

	next := s.NextInit()
	s.EraseInit()
	if s.NextInit() != nil || isZero(next.Bytes()) {
		t.Error("EraseInit: NextInit must be nil and earlier copies unaffected")
	}
	moved, err := ParseEpochSecrets(s.Bytes())
	if err != nil || moved.EncryptionSecret() != nil || moved.NextInit() != nil ||
		!bytes.Equal(moved.ResumptionPSK(), s.ResumptionPSK()) {
		t.Errorf("round trip after moving the encryption secret and erasing init: %v", err)
	}
	conf := s.ConfirmationKey()
	s.Erase()
	if !isZero(conf) || s.ConfirmationKey() != nil {
		t.Error("EpochSecrets.Erase left a secret")
	}
}

func TestGroupContext(t *testing.T) {
	gc := &GroupContext{
		Version:                 MLS10,
		CipherSuite:             hpke.MLS_256_DHKEMP521_AES256GCM_SHA512_P521,
		GroupID:                 []byte("g"),
		Epoch:                   1<<40 + 3,
		TreeHash:                bytes.Repeat([]byte{1}, 64),
		ConfirmedTranscriptHash: bytes.Repeat([]byte{2}, 100),
		Extensions:              []Extension{{Type: 5, Data: []byte("x")}, {Type: 0xff00, Data: []byte{}}},
	}
	b := gc.Bytes()
	got, err := ParseGroupContext(b)
	require.NoError(t, err)
	if !bytes.Equal(got.Bytes(), b) || got.Epoch != gc.Epoch || len(got.Extensions) != 2 ||
		got.Extensions[1].Type != 0xff00 || !bytes.Equal(got.Extensions[0].Data, []byte("x")) {
		t.Fatalf("round trip: %+v", got)
	}
	if _, err := ParseGroupContext(append(b, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
	for i := range b {
		if _, err := ParseGroupContext(b[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d bytes: %v", i, err)
		}
	}
	// A non-minimal varint length is rejected.
	bad := bytes.Clone(b)
	if bad[4] != 1 {
		t.Fatal("unexpected encoding")
	}
	bad = append(append(append([]byte{}, b[:4]...), 0x40, 0x01), b[5:]...)
	if _, err := ParseGroupContext(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("non-minimal varint: %v", err)
	}
}

func TestPreSharedKeyID(t *testing.T) {
	ids := []PreSharedKeyID{
		{PSKType: PSKTypeExternal, PSKID: []byte("id"), PSKNonce: NewPSKNonce(testSuite)},
		{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageBranch, PSKGroupID: []byte("group"), PSKEpoch: 7, PSKNonce: []byte{1}},
	}
	for _, id := range ids {
		b, err := id.Bytes()
		require.NoError(t, err)
		got, err := ParsePreSharedKeyID(b)
		require.NoError(t, err)
		again, _ := got.Bytes()
		if !bytes.Equal(again, b) || got.PSKType != id.PSKType || got.PSKEpoch != id.PSKEpoch {
			t.Errorf("round trip of %+v: %+v", id, got)
		}
		if _, err := ParsePreSharedKeyID(append(b, 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("trailing byte: %v", err)
		}
		for _, typ := range []byte{0, 3, 255} {
			bad := bytes.Clone(b)
			bad[0] = typ
			if _, err := ParsePreSharedKeyID(bad); !errors.Is(err, ErrMalformed) {
				t.Errorf("PSK type %d: %v", typ, err)
			}
		}
	}
	if _, err := (&PreSharedKeyID{PSKType: 0}).Bytes(); err == nil {
		t.Error("marshaling PSK type 0 succeeded")
	}
	// Unmarshal works inside a larger structure, as mls embeds it.
	var bld cryptobyte.Builder
	ids[1].Marshal(&bld)
	bld.AddUint8(42)
	s := cryptobyte.String(bld.BytesOrPanic())
	var got PreSharedKeyID
	var trailer uint8
	if !got.Unmarshal(&s) || !s.ReadUint8(&trailer) || trailer != 42 || !s.Empty() {
		t.Error("embedded Unmarshal")
	}
}

func TestPSKSecret(t *testing.T) {
	cs := testSuite
	zero, err := PSKSecret(cs, nil)
	if err != nil || !bytes.Equal(zero, make([]byte, cs.HashSize())) {
		t.Fatalf("no PSKs: %x, %v", zero, err)
	}
	ext := PSK{ID: PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: []byte("a"), PSKNonce: testSecret(cs, 1)}, Secret: []byte("k1")}
	res := PSK{ID: PreSharedKeyID{PSKType: PSKTypeResumption, Usage: ResumptionPSKUsageApplication,
		PSKGroupID: []byte("g"), PSKEpoch: 3, PSKNonce: testSecret(cs, 2)}, Secret: testSecret(cs, 3)}
	ab, _ := PSKSecret(cs, []PSK{ext, res})
	ba, _ := PSKSecret(cs, []PSK{res, ext})
	a, _ := PSKSecret(cs, []PSK{ext})
	if bytes.Equal(ab, ba) || bytes.Equal(ab, a) || len(ab) != cs.HashSize() {
		t.Error("PSK secret ignores order or count")
	}
	res2 := res
	res2.ID.PSKEpoch = 4
	if x, _ := PSKSecret(cs, []PSK{ext, res2}); bytes.Equal(x, ab) {
		t.Error("PSK secret ignores the resumption epoch")
	}
	if _, err := PSKSecret(cs, []PSK{{}}); err == nil {
		t.Error("PSK with type 0 accepted")
	}
	if _, err := PSKSecret(cs, make([]PSK, 1<<16)); !errors.Is(err, ErrTooManyPSKs) {
		t.Errorf("65536 PSKs: %v", err)
	}
}
