package mls

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

type externalPSK struct {
	PSKID hexBytes `json:"psk_id"`
	PSK   hexBytes `json:"psk"`
}

type passiveEpoch struct {
	Proposals          []hexBytes `json:"proposals"`
	Commit             hexBytes   `json:"commit"`
	EpochAuthenticator hexBytes   `json:"epoch_authenticator"`
}

type passiveClientVector struct {
	CipherSuite               uint16         `json:"cipher_suite"`
	ExternalPSKs              []externalPSK  `json:"external_psks"`
	KeyPackage                hexBytes       `json:"key_package"`
	SignaturePriv             hexBytes       `json:"signature_priv"`
	EncryptionPriv            hexBytes       `json:"encryption_priv"`
	InitPriv                  hexBytes       `json:"init_priv"`
	Welcome                   hexBytes       `json:"welcome"`
	RatchetTree               hexBytes       `json:"ratchet_tree"`
	InitialEpochAuthenticator hexBytes       `json:"initial_epoch_authenticator"`
	Epochs                    []passiveEpoch `json:"epochs"`
}

// testPSKStore serves the external PSKs of a vector.
type testPSKStore map[string][]byte

func (s testPSKStore) ExternalPSK(id []byte) ([]byte, error) {
	if v, ok := s[string(id)]; ok {
		return v, nil
	}
	return nil, ErrNotFound
}

func (s testPSKStore) ResumptionPSK([]byte, uint64) ([]byte, error) { return nil, ErrNotFound }

func testPassiveClient(t *testing.T, v *passiveClientVector) {
	cs := CipherSuite(v.CipherSuite)
	kpMsg, err := ParseMessage(v.KeyPackage)
	if err != nil || kpMsg.KeyPackage == nil {
		t.Fatalf("key package: %v", err)
	}
	kp := kpMsg.KeyPackage
	initKey, err := cs.NewPrivateKey(v.InitPriv)
	if err != nil {
		t.Fatal(err)
	}
	encKey, err := cs.NewPrivateKey(v.EncryptionPriv)
	if err != nil {
		t.Fatal(err)
	}
	sigKey, err := cs.NewSignaturePrivateKey(v.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	psks := testPSKStore{}
	for _, p := range v.ExternalPSKs {
		psks[string(p.PSKID)] = p.PSK
	}
	// The vectors' KeyPackages carry lifetimes from 2023: run the clock at
	// the middle of the joiner's lifetime.
	lt := kp.LeafNode.Lifetime
	now := time.Unix(int64(lt.NotBefore/2+lt.NotAfter/2), 0)
	// Their leaves have lifetimes of a year (passive-client-welcome) or of
	// 0 to 2^64-1 seconds: accept any total lifetime (§7.2 leaves the
	// maximum to the application).
	cfg := &Config{Now: func() time.Time { return now }, PSKs: psks, MaxLeafLifetime: -1}

	welcome, err := ParseMessage(v.Welcome)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Join(welcome, &KeyPackagePrivate{KeyPackage: kp, InitKey: initKey, EncryptionKey: encKey, SignatureKey: sigKey},
		&JoinOptions{RatchetTree: v.RatchetTree}, cfg)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), v.InitialEpochAuthenticator) {
		t.Fatalf("initial epoch authenticator differs")
	}
	for i, e := range v.Epochs {
		for j, pdata := range e.Proposals {
			m, err := ParseMessage(pdata)
			if err != nil {
				t.Fatalf("epoch %d proposal %d: %v", i, j, err)
			}
			if _, err := g.Process(m); err != nil {
				t.Fatalf("epoch %d proposal %d: %v", i, j, err)
			}
		}
		m, err := ParseMessage(e.Commit)
		if err != nil {
			t.Fatalf("epoch %d commit: %v", i, err)
		}
		before := g.Epoch()
		res, err := g.Process(m)
		if err != nil {
			t.Fatalf("epoch %d commit: %v", i, err)
		}
		if res.Commit == nil {
			t.Fatalf("epoch %d: not a commit", i)
		}
		if g.Epoch() != before {
			t.Fatalf("epoch %d: Process changed the epoch", i)
		}
		if err := g.Merge(res.Commit); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), e.EpochAuthenticator) {
			t.Fatalf("epoch %d: epoch authenticator differs", i)
		}
		// The same commit again is now for a past epoch.
		if _, err := g.Process(m); !errors.Is(err, ErrWrongEpoch) {
			t.Fatalf("epoch %d: replayed commit: %v", i, err)
		}
	}
}
