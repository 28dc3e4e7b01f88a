package mls

import (
	"errors"
	"testing"

	"github.com/microchat/e2ee/keyschedule"
)

type welcomeVector struct {
	CipherSuite uint16   `json:"cipher_suite"`
	InitPriv    hexBytes `json:"init_priv"`
	KeyPackage  hexBytes `json:"key_package"`
	SignerPub   hexBytes `json:"signer_pub"`
	Welcome     hexBytes `json:"welcome"`
}

func testWelcome(t *testing.T, v *welcomeVector) {
	cs := CipherSuite(v.CipherSuite)
	kpMsg, err := ParseMessage(v.KeyPackage)
	if err != nil || kpMsg.KeyPackage == nil {
		t.Fatalf("key package: %v", err)
	}
	if err := kpMsg.KeyPackage.verifyBasic(); err != nil {
		t.Fatalf("key package: %v", err)
	}
	initKey, err := cs.NewPrivateKey(v.InitPriv)
	if err != nil {
		t.Fatal(err)
	}
	wMsg, err := ParseMessage(v.Welcome)
	if err != nil || wMsg.Welcome == nil {
		t.Fatalf("welcome: %v", err)
	}
	w := wMsg.Welcome
	if w.CipherSuite != cs {
		t.Fatalf("welcome suite %v", w.CipherSuite)
	}
	kp := &KeyPackagePrivate{KeyPackage: kpMsg.KeyPackage, InitKey: initKey}
	gs, err := decryptGroupSecrets(w, kp)
	if err != nil {
		t.Fatalf("group secrets: %v", err)
	}
	joiner, err := keyschedule.NewJoinerSecret(cs, gs.JoinerSecret)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs.PSKs) != 0 {
		t.Fatalf("vector names %d PSKs", len(gs.PSKs))
	}
	gi, err := decryptGroupInfo(cs, w, joiner.WelcomeSecret(nil))
	if err != nil {
		t.Fatalf("group info: %v", err)
	}
	if err := gi.verify(cs, v.SignerPub); err != nil {
		t.Fatalf("group info signature: %v", err)
	}
	ctx := gi.GroupContext
	secrets := joiner.EpochSecret(nil, ctx.Bytes()).Derive()
	if !secrets.VerifyConfirmationTag(ctx.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		t.Fatal("confirmation tag does not verify")
	}

	// A Welcome for someone else, or one whose group info is tampered
	// with, is refused with a matchable error.
	other := *w
	other.Secrets = nil
	if _, err := decryptGroupSecrets(&other, kp); !errors.Is(err, ErrNotMember) {
		t.Errorf("welcome without our secrets: %v", err)
	}
	bad := *w
	bad.EncryptedGroupInfo = append([]byte(nil), w.EncryptedGroupInfo...)
	bad.EncryptedGroupInfo[0] ^= 1
	if _, err := decryptGroupSecrets(&bad, kp); !errors.Is(err, ErrDecryption) {
		t.Errorf("tampered group info (the group secrets' HPKE context): %v", err)
	}
	if _, err := decryptGroupInfo(cs, &bad, joiner.WelcomeSecret(nil)); !errors.Is(err, ErrDecryption) {
		t.Errorf("tampered group info: %v", err)
	}
	gi.Signer++
	if err := gi.verify(cs, v.SignerPub); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("altered group info: %v", err)
	}
}
