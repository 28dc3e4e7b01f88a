package keyschedule

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/microchat/e2ee/internal/wire"
)

type hexBytes = vectortest.HexBytes

type keyScheduleVector struct {
	CipherSuite       uint16   `json:"cipher_suite"`
	GroupID           hexBytes `json:"group_id"`
	InitialInitSecret hexBytes `json:"initial_init_secret"`
	Epochs            []struct {
		TreeHash                hexBytes `json:"tree_hash"`
		CommitSecret            hexBytes `json:"commit_secret"`
		PSKSecret               hexBytes `json:"psk_secret"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		GroupContext            hexBytes `json:"group_context"`
		JoinerSecret            hexBytes `json:"joiner_secret"`
		WelcomeSecret           hexBytes `json:"welcome_secret"`
		InitSecret              hexBytes `json:"init_secret"`
		SenderDataSecret        hexBytes `json:"sender_data_secret"`
		EncryptionSecret        hexBytes `json:"encryption_secret"`
		ExporterSecret          hexBytes `json:"exporter_secret"`
		EpochAuthenticator      hexBytes `json:"epoch_authenticator"`
		ExternalSecret          hexBytes `json:"external_secret"`
		ConfirmationKey         hexBytes `json:"confirmation_key"`
		MembershipKey           hexBytes `json:"membership_key"`
		ResumptionPSK           hexBytes `json:"resumption_psk"`
		ExternalPub             hexBytes `json:"external_pub"`
		Exporter                struct {
			// Label is used as the label string itself: although it
			// looks like hex, the official implementations do not
			// decode it.
			Label   string   `json:"label"`
			Context hexBytes `json:"context"`
			Length  int      `json:"length"`
			Secret  hexBytes `json:"secret"`
		} `json:"exporter"`
	} `json:"epochs"`
}

type pskSecretVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	PSKs        []struct {
		PSKID    hexBytes `json:"psk_id"`
		PSK      hexBytes `json:"psk"`
		PSKNonce hexBytes `json:"psk_nonce"`
	} `json:"psks"`
	PSKSecret hexBytes `json:"psk_secret"`
}

type secretTreeVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	SenderData  struct {
		SenderDataSecret hexBytes `json:"sender_data_secret"`
		Ciphertext       hexBytes `json:"ciphertext"`
		Key              hexBytes `json:"key"`
		Nonce            hexBytes `json:"nonce"`
	} `json:"sender_data"`
	EncryptionSecret hexBytes `json:"encryption_secret"`
	Leaves           [][]struct {
		Generation       uint32   `json:"generation"`
		HandshakeKey     hexBytes `json:"handshake_key"`
		HandshakeNonce   hexBytes `json:"handshake_nonce"`
		ApplicationKey   hexBytes `json:"application_key"`
		ApplicationNonce hexBytes `json:"application_nonce"`
	} `json:"leaves"`
}

type transcriptVector struct {
	CipherSuite                  uint16   `json:"cipher_suite"`
	ConfirmationKey              hexBytes `json:"confirmation_key"`
	AuthenticatedContent         hexBytes `json:"authenticated_content"`
	InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
	ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
	InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
}

func TestVectors(t *testing.T) {
	vectortest.Run(t, "key-schedule", testKeySchedule)
	vectortest.Run(t, "psk_secret", testPSKSecret)
	vectortest.Run(t, "secret-tree", testSecretTree)
	vectortest.Run(t, "transcript-hashes", testTranscriptHashes)
}

// TestGeneratedVectors checks the vectors of ../testdata/vectors, which
// package testvectors generates, with the same checks.
func TestGeneratedVectors(t *testing.T) {
	vectortest.RunGenerated(t, "key-schedule", testKeySchedule)
	vectortest.RunGenerated(t, "psk_secret", testPSKSecret)
	vectortest.RunGenerated(t, "secret-tree", testSecretTree)
	vectortest.RunGenerated(t, "transcript-hashes", testTranscriptHashes)
}

func suiteOf(t *testing.T, id uint16) hpke.CipherSuite {
	t.Helper()
	cs := hpke.CipherSuite(id)
	if !cs.Supported() {
		t.Fatalf("cipher suite %d is not supported", id)
	}
	return cs
}

func checkBytes(t *testing.T, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, want %x", name, got, want)
	}
}

func testKeySchedule(t *testing.T, v *keyScheduleVector) {
	cs := suiteOf(t, v.CipherSuite)
	if len(v.Epochs) != 5 {
		t.Fatalf("case has %d epochs, want 5", len(v.Epochs))
	}
	init, err := NewInitSecret(cs, v.InitialInitSecret)
	require.NoError(t, err)
	for n := range v.Epochs {
		e := &v.Epochs[n]
		ok := t.Run(fmt.Sprintf("epoch-%d", n), func(t *testing.T) {
			gc := &GroupContext{
				Version:                 MLS10,
				CipherSuite:             cs,
				GroupID:                 v.GroupID,
				Epoch:                   uint64(n),
				TreeHash:                e.TreeHash,
				ConfirmedTranscriptHash: e.ConfirmedTranscriptHash,
			}
			gcBytes := gc.Bytes()
			checkBytes(t, "group_context", gcBytes, e.GroupContext)
			parsed, err := ParseGroupContext(e.GroupContext)
			require.NoError(t, err, "ParseGroupContext")
			checkBytes(t, "re-encoded group_context", parsed.Bytes(), e.GroupContext)
			if parsed.Epoch != uint64(n) || parsed.CipherSuite != cs || parsed.Version != MLS10 {
				t.Errorf("parsed GroupContext = %+v", parsed)
			}

			joiner := init.JoinerSecret(e.CommitSecret, gcBytes)
			checkBytes(t, "joiner_secret", joiner.Bytes(), e.JoinerSecret)
			welcome := joiner.WelcomeSecret(e.PSKSecret)
			checkBytes(t, "welcome_secret", welcome.Bytes(), e.WelcomeSecret)
			epoch := joiner.EpochSecret(e.PSKSecret, gcBytes)
			s := epoch.Derive()

			// A new member starting from the joiner secret gets the same.
			joined, err := NewJoinerSecret(cs, e.JoinerSecret)
			require.NoError(t, err)
			checkBytes(t, "joined epoch_secret", joined.EpochSecret(e.PSKSecret, gcBytes).Bytes(), epoch.Bytes())

			checkBytes(t, "sender_data_secret", s.SenderDataSecret(), e.SenderDataSecret)
			checkBytes(t, "encryption_secret", s.EncryptionSecret(), e.EncryptionSecret)
			checkBytes(t, "exporter_secret", s.ExporterSecret(), e.ExporterSecret)
			checkBytes(t, "epoch_authenticator", s.EpochAuthenticator(), e.EpochAuthenticator)
			checkBytes(t, "external_secret", s.ExternalSecret(), e.ExternalSecret)
			checkBytes(t, "confirmation_key", s.ConfirmationKey(), e.ConfirmationKey)
			checkBytes(t, "membership_key", s.MembershipKey(), e.MembershipKey)
			checkBytes(t, "resumption_psk", s.ResumptionPSK(), e.ResumptionPSK)
			checkBytes(t, "init_secret", s.NextInit().Bytes(), e.InitSecret)

			priv, err := s.ExternalKeyPair()
			require.NoError(t, err, "ExternalKeyPair")
			checkBytes(t, "external_pub", priv.PublicKey(), e.ExternalPub)

			exported, err := s.Export(e.Exporter.Label, e.Exporter.Context, e.Exporter.Length)
			require.NoError(t, err, "Export")
			checkBytes(t, "exporter.secret", exported, e.Exporter.Secret)
		})
		if !ok {
			return // later epochs depend on this one
		}
		init = &InitSecret{suite: cs, secret: e.InitSecret}
	}
}

func testPSKSecret(t *testing.T, v *pskSecretVector) {
	cs := suiteOf(t, v.CipherSuite)
	psks := make([]PSK, len(v.PSKs))
	for i, p := range v.PSKs {
		psks[i] = PSK{
			ID:     PreSharedKeyID{PSKType: PSKTypeExternal, PSKID: p.PSKID, PSKNonce: p.PSKNonce},
			Secret: p.PSK,
		}
	}
	got, err := PSKSecret(cs, psks)
	require.NoError(t, err)
	checkBytes(t, "psk_secret", got, v.PSKSecret)
}

func testSecretTree(t *testing.T, v *secretTreeVector) {
	cs := suiteOf(t, v.CipherSuite)
	t.Run("sender-data", func(t *testing.T) {
		key, nonce := SenderDataKey(cs, v.SenderData.SenderDataSecret, v.SenderData.Ciphertext)
		checkBytes(t, "key", key, v.SenderData.Key)
		checkBytes(t, "nonce", nonce, v.SenderData.Nonce)
	})
	tree, err := NewSecretTree(cs, v.EncryptionSecret, uint32(len(v.Leaves)), nil)
	require.NoError(t, err)
	for leaf, gens := range v.Leaves {
		t.Run(fmt.Sprintf("leaf-%d", leaf), func(t *testing.T) {
			if len(gens) == 0 {
				t.Fatal("no generations listed")
			}
			for _, g := range gens {
				hs, err := tree.Key(uint32(leaf), Handshake, g.Generation)
				require.NoError(t, err, "handshake generation %d", g.Generation)
				checkBytes(t, fmt.Sprintf("handshake_key[%d]", g.Generation), hs.Key, g.HandshakeKey)
				checkBytes(t, fmt.Sprintf("handshake_nonce[%d]", g.Generation), hs.Nonce, g.HandshakeNonce)
				app, err := tree.Key(uint32(leaf), Application, g.Generation)
				require.NoError(t, err, "application generation %d", g.Generation)
				checkBytes(t, fmt.Sprintf("application_key[%d]", g.Generation), app.Key, g.ApplicationKey)
				checkBytes(t, fmt.Sprintf("application_nonce[%d]", g.Generation), app.Nonce, g.ApplicationNonce)
				if hs.Generation != g.Generation || app.Generation != g.Generation {
					t.Errorf("generations %d, %d, want %d", hs.Generation, app.Generation, g.Generation)
				}
			}
		})
	}
	if len(tree.nodes) != 0 {
		t.Errorf("%d node secrets remain after every leaf was started", len(tree.nodes))
	}
}

func testTranscriptHashes(t *testing.T, v *transcriptVector) {
	cs := suiteOf(t, v.CipherSuite)
	// AuthenticatedContent of a commit ends with its confirmation_tag,
	// a MAC<V> of KDF.Nh bytes; what precedes it is the
	// ConfirmedTranscriptHashInput.
	nh := cs.HashSize()
	suffix := wire.AppendVarint(nil, uint32(nh))
	ac := v.AuthenticatedContent
	cut := len(ac) - len(suffix) - nh
	if cut < 0 || !bytes.Equal(ac[cut:cut+len(suffix)], suffix) {
		t.Fatalf("authenticated_content does not end with a %d-byte confirmation tag", nh)
	}
	input, tag := ac[:cut], ac[cut+len(suffix):]

	confirmed := ConfirmedTranscriptHash(cs, v.InterimTranscriptHashBefore, input)
	checkBytes(t, "confirmed_transcript_hash_after", confirmed, v.ConfirmedTranscriptHashAfter)
	checkBytes(t, "confirmation_tag", ConfirmationTag(cs, v.ConfirmationKey, confirmed), tag)
	if !VerifyConfirmationTag(cs, v.ConfirmationKey, confirmed, tag) {
		t.Error("VerifyConfirmationTag rejected the vector's tag")
	}
	bad := bytes.Clone(tag)
	bad[0] ^= 1
	if VerifyConfirmationTag(cs, v.ConfirmationKey, confirmed, bad) {
		t.Error("VerifyConfirmationTag accepted a modified tag")
	}
	checkBytes(t, "interim_transcript_hash_after", InterimTranscriptHash(cs, confirmed, tag), v.InterimTranscriptHashAfter)
}
