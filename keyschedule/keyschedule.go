package keyschedule

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/microchat/e2ee/hpke"
)

// Errors returned by this package. Callers match them with [errors.Is].
var (
	// ErrInvalidSecret is returned when a secret given to a constructor
	// does not have the length the cipher suite requires.
	ErrInvalidSecret = errors.New("keyschedule: secret has the wrong length")
	// ErrInvalidLength is returned when an output length is out of range
	// for the cipher suite's KDF.
	ErrInvalidLength = errors.New("keyschedule: output length out of range")
	// ErrErased is returned when a secret is used after it was erased or
	// moved elsewhere.
	ErrErased = errors.New("keyschedule: secret has been erased")
)

const redacted = "[redacted]"

// zeroIfEmpty returns s, or the all-zero string of length Nh when s is
// empty: the "0" of the key schedule diagram (RFC 9420, Section 8).
func zeroIfEmpty(cs hpke.CipherSuite, s []byte) []byte {
	if len(s) == 0 {
		return make([]byte, cs.HashSize())
	}
	return s
}

// erase overwrites b with zeros. It is how every consumed secret in this
// package is deleted (RFC 9420, Section 9.2).
func erase(b []byte) { clear(b) }

// InitSecret is the init_secret that starts an epoch's key schedule (RFC
// 9420, Section 8). It must be kept secret.
type InitSecret struct {
	suite  hpke.CipherSuite
	secret []byte
}

// GenerateInitSecret returns a fresh random init secret, as the creator of a
// group uses for epoch 0 (RFC 9420, Section 11).
func GenerateInitSecret(cs hpke.CipherSuite) (*InitSecret, error) {
	if !cs.Supported() {
		return nil, hpke.ErrUnsupportedCipherSuite
	}
	return &InitSecret{suite: cs, secret: randomBytes(cs.HashSize())}, nil
}

// NewInitSecret returns the init secret with the given bytes, which must be
// KDF.Nh long. It copies b. It is used to restore a persisted state and by
// tests; new groups use [GenerateInitSecret].
func NewInitSecret(cs hpke.CipherSuite, b []byte) (*InitSecret, error) {
	if !cs.Supported() {
		return nil, hpke.ErrUnsupportedCipherSuite
	}
	if len(b) != cs.HashSize() {
		return nil, fmt.Errorf("%w: init secret of %d bytes", ErrInvalidSecret, len(b))
	}
	return &InitSecret{suite: cs, secret: clone(b)}, nil
}

// ExternalInit performs the joiner's side of external initialization (RFC
// 9420, Section 8.3): it encapsulates to the group's external public key
// externalPub and returns the kem_output to send in an ExternalInit proposal
// together with the init secret of the new epoch.
func ExternalInit(cs hpke.CipherSuite, externalPub []byte) (kemOutput []byte, init *InitSecret, err error) {
	if !cs.Supported() {
		return nil, nil, hpke.ErrUnsupportedCipherSuite
	}
	kemOutput, secret, err := cs.SealExport(externalPub, nil, []byte(externalInitLabel), cs.HashSize())
	if err != nil {
		return nil, nil, fmt.Errorf("keyschedule: external init: %w", err)
	}
	return kemOutput, &InitSecret{suite: cs, secret: secret}, nil
}

const externalInitLabel = "MLS 1.0 external init secret"

// Suite returns the cipher suite of s.
func (s *InitSecret) Suite() hpke.CipherSuite { return s.suite }

// Bytes returns the init secret. The returned slice shares memory with s and
// must not be modified; it is zeroed by [InitSecret.Erase].
func (s *InitSecret) Bytes() []byte { return s.secret }

// Erase overwrites the init secret with zeros. Call it once the epoch it
// starts has been entered (RFC 9420, Section 9.2).
func (s *InitSecret) Erase() { erase(s.secret); s.secret = nil }

// String returns "[redacted]".
func (s *InitSecret) String() string { return redacted }

// GoString returns "[redacted]", so that %#v does not print the secret.
func (s *InitSecret) GoString() string { return redacted }

// JoinerSecret derives the joiner_secret of the next epoch from this init
// secret, the commit secret, and the serialized GroupContext of the new
// epoch (RFC 9420, Section 8). An empty commitSecret stands for the all-zero
// commit secret of a Commit without an UpdatePath.
//
// JoinerSecret does not erase s, so that a commit can be staged and
// discarded; call [InitSecret.Erase] once the new epoch is merged.
func (s *InitSecret) JoinerSecret(commitSecret, groupContext []byte) *JoinerSecret {
	cs := s.suite
	prk := cs.Extract(s.secret, zeroIfEmpty(cs, commitSecret))
	defer erase(prk)
	return &JoinerSecret{suite: cs, secret: cs.ExpandWithLabel(prk, "joiner", groupContext, cs.HashSize())}
}

// JoinerSecret is the joiner_secret of an epoch (RFC 9420, Section 8). The
// committer sends it to new members in GroupSecrets. It must be kept secret.
type JoinerSecret struct {
	suite  hpke.CipherSuite
	secret []byte
}

// NewJoinerSecret returns the joiner secret with the given bytes, as received
// in GroupSecrets (RFC 9420, Section 12.4.3.1). It copies b and returns
// [ErrInvalidSecret] unless b is KDF.Nh long.
func NewJoinerSecret(cs hpke.CipherSuite, b []byte) (*JoinerSecret, error) {
	if !cs.Supported() {
		return nil, hpke.ErrUnsupportedCipherSuite
	}
	if len(b) != cs.HashSize() {
		return nil, fmt.Errorf("%w: joiner secret of %d bytes", ErrInvalidSecret, len(b))
	}
	return &JoinerSecret{suite: cs, secret: clone(b)}, nil
}

// Bytes returns the joiner secret, to be sent in GroupSecrets. The returned
// slice shares memory with j and must not be modified.
func (j *JoinerSecret) Bytes() []byte { return j.secret }

// Erase overwrites the joiner secret with zeros.
func (j *JoinerSecret) Erase() { erase(j.secret); j.secret = nil }

// String returns "[redacted]".
func (j *JoinerSecret) String() string { return redacted }

// GoString returns "[redacted]", so that %#v does not print the secret.
func (j *JoinerSecret) GoString() string { return redacted }

// member returns KDF.Extract(joiner_secret, psk_secret), the unnamed node of
// the key schedule from which the welcome and epoch secrets are derived.
func (j *JoinerSecret) member(pskSecret []byte) []byte {
	return j.suite.Extract(j.secret, zeroIfEmpty(j.suite, pskSecret))
}

// WelcomeSecret derives the welcome_secret (RFC 9420, Section 8) given the
// PSK secret of the epoch (see [PSKSecret]); an empty pskSecret stands for
// the all-zero PSK secret of an epoch without PSKs.
func (j *JoinerSecret) WelcomeSecret(pskSecret []byte) *WelcomeSecret {
	m := j.member(pskSecret)
	defer erase(m)
	return &WelcomeSecret{suite: j.suite, secret: j.suite.DeriveSecret(m, "welcome")}
}

// EpochSecret derives the epoch_secret (RFC 9420, Section 8) given the PSK
// secret of the epoch and the serialized GroupContext of the epoch. An empty
// pskSecret stands for the all-zero PSK secret.
func (j *JoinerSecret) EpochSecret(pskSecret, groupContext []byte) *EpochSecret {
	cs := j.suite
	m := j.member(pskSecret)
	defer erase(m)
	return &EpochSecret{suite: cs, secret: cs.ExpandWithLabel(m, "epoch", groupContext, cs.HashSize())}
}

// WelcomeSecret is the welcome_secret of an epoch, from which the key and
// nonce that encrypt the GroupInfo of a Welcome are derived (RFC 9420,
// Section 12.4.3.1). It must be kept secret.
type WelcomeSecret struct {
	suite  hpke.CipherSuite
	secret []byte
}

// Bytes returns the welcome secret. The returned slice shares memory with w
// and must not be modified.
func (w *WelcomeSecret) Bytes() []byte { return w.secret }

// Key returns welcome_key = ExpandWithLabel(welcome_secret, "key", "",
// AEAD.Nk).
func (w *WelcomeSecret) Key() []byte {
	return w.suite.ExpandWithLabel(w.secret, "key", nil, w.suite.AEADKeySize())
}

// Nonce returns welcome_nonce = ExpandWithLabel(welcome_secret, "nonce", "",
// AEAD.Nn).
func (w *WelcomeSecret) Nonce() []byte {
	return w.suite.ExpandWithLabel(w.secret, "nonce", nil, w.suite.AEADNonceSize())
}

// Erase overwrites the welcome secret with zeros.
func (w *WelcomeSecret) Erase() { erase(w.secret); w.secret = nil }

// String returns "[redacted]".
func (w *WelcomeSecret) String() string { return redacted }

// GoString returns "[redacted]", so that %#v does not print the secret.
func (w *WelcomeSecret) GoString() string { return redacted }

// EpochSecret is the epoch_secret of an epoch (RFC 9420, Section 8). Its only
// use is [EpochSecret.Derive]. It must be kept secret.
type EpochSecret struct {
	suite  hpke.CipherSuite
	secret []byte
}

// Derive derives every epoch-derived secret of RFC 9420, Section 8, Table 4,
// and the init secret of the next epoch. It does not erase e; callers do so
// with [EpochSecret.Erase] once they no longer need it.
func (e *EpochSecret) Derive() *EpochSecrets {
	cs, s := e.suite, e.secret
	return &EpochSecrets{
		suite:              cs,
		senderData:         cs.DeriveSecret(s, "sender data"),
		encryption:         cs.DeriveSecret(s, "encryption"),
		exporter:           cs.DeriveSecret(s, "exporter"),
		external:           cs.DeriveSecret(s, "external"),
		confirmation:       cs.DeriveSecret(s, "confirm"),
		membership:         cs.DeriveSecret(s, "membership"),
		resumption:         cs.DeriveSecret(s, "resumption"),
		epochAuthenticator: cs.DeriveSecret(s, "authentication"),
		init:               cs.DeriveSecret(s, "init"),
	}
}

// Bytes returns the epoch secret. The returned slice shares memory with e
// and must not be modified.
func (e *EpochSecret) Bytes() []byte { return e.secret }

// Erase overwrites the epoch secret with zeros.
func (e *EpochSecret) Erase() { erase(e.secret); e.secret = nil }

// String returns "[redacted]".
func (e *EpochSecret) String() string { return redacted }

// GoString returns "[redacted]", so that %#v does not print the secret.
func (e *EpochSecret) GoString() string { return redacted }

// EpochSecrets holds the secrets derived from one epoch's epoch secret (RFC
// 9420, Section 8, Table 4). It must be kept secret.
//
// The accessors return slices that share memory with s: callers must not
// modify them, and [EpochSecrets.Erase] zeroes them.
type EpochSecrets struct {
	suite              hpke.CipherSuite
	senderData         []byte
	encryption         []byte
	exporter           []byte
	external           []byte
	confirmation       []byte
	membership         []byte
	resumption         []byte
	epochAuthenticator []byte
	init               []byte
}

// Suite returns the cipher suite of s.
func (s *EpochSecrets) Suite() hpke.CipherSuite { return s.suite }

// SenderDataSecret returns sender_data_secret, from which the keys that
// protect the sender data of a PrivateMessage are derived (see
// [EpochSecrets.SenderDataKey]).
func (s *EpochSecrets) SenderDataSecret() []byte { return s.senderData }

// EncryptionSecret returns encryption_secret, the root of the secret tree,
// or nil once it has been moved into a tree by [EpochSecrets.SecretTree].
func (s *EpochSecrets) EncryptionSecret() []byte { return s.encryption }

// ExporterSecret returns exporter_secret (see [EpochSecrets.Export]).
func (s *EpochSecrets) ExporterSecret() []byte { return s.exporter }

// ExternalSecret returns external_secret (see [EpochSecrets.ExternalKeyPair]).
func (s *EpochSecrets) ExternalSecret() []byte { return s.external }

// ConfirmationKey returns confirmation_key (see [EpochSecrets.ConfirmationTag]).
func (s *EpochSecrets) ConfirmationKey() []byte { return s.confirmation }

// MembershipKey returns membership_key (see [EpochSecrets.MembershipTag]).
func (s *EpochSecrets) MembershipKey() []byte { return s.membership }

// ResumptionPSK returns resumption_psk, the PSK a later epoch or group may
// inject to prove membership in this epoch (RFC 9420, Section 8.6).
func (s *EpochSecrets) ResumptionPSK() []byte { return s.resumption }

// EpochAuthenticator returns epoch_authenticator, which members may compare
// out of band to detect impersonation (RFC 9420, Section 8.7).
func (s *EpochSecrets) EpochAuthenticator() []byte { return s.epochAuthenticator }

// NextInit returns the init secret of the next epoch, or nil after
// [EpochSecrets.EraseInit]. The returned InitSecret is a copy, owned by the
// caller.
func (s *EpochSecrets) NextInit() *InitSecret {
	if s.init == nil {
		return nil
	}
	return &InitSecret{suite: s.suite, secret: clone(s.init)}
}

// EraseInit erases the init secret of the next epoch, once the next epoch
// has been entered (RFC 9420, Section 9.2).
func (s *EpochSecrets) EraseInit() { erase(s.init); s.init = nil }

// Export implements MLS-Exporter(label, context, length) (RFC 9420, Section
// 8.5). It returns [ErrInvalidLength] unless 0 <= length <= 255*KDF.Nh.
func (s *EpochSecrets) Export(label string, context []byte, length int) ([]byte, error) {
	cs := s.suite
	if length < 0 || length > 255*cs.HashSize() {
		return nil, fmt.Errorf("%w: exporter length %d", ErrInvalidLength, length)
	}
	derived := cs.DeriveSecret(s.exporter, label)
	defer erase(derived)
	return cs.ExpandWithLabel(derived, "exported", cs.Hash(context), length), nil
}

// ExternalKeyPair derives the external HPKE key pair of the epoch from
// external_secret (RFC 9420, Section 8): external_priv, external_pub =
// KEM.DeriveKeyPair(external_secret). Its public key is published in the
// external_pub extension of GroupInfo.
func (s *EpochSecrets) ExternalKeyPair() (*hpke.PrivateKey, error) {
	k, err := s.suite.DeriveKeyPair(s.external)
	if err != nil {
		return nil, fmt.Errorf("keyschedule: deriving external key pair: %w", err)
	}
	return k, nil
}

// ExternalInit performs the group members' side of external initialization
// (RFC 9420, Section 8.3): it decapsulates kemOutput from an ExternalInit
// proposal with the epoch's external private key and returns the init secret
// of the next epoch. A malformed kemOutput yields an error matching
// [hpke.ErrDecryption] or [hpke.ErrInvalidPublicKey].
func (s *EpochSecrets) ExternalInit(kemOutput []byte) (*InitSecret, error) {
	cs := s.suite
	k, err := s.ExternalKeyPair()
	if err != nil {
		return nil, err
	}
	secret, err := cs.OpenExport(k, kemOutput, nil, []byte(externalInitLabel), cs.HashSize())
	if err != nil {
		return nil, fmt.Errorf("keyschedule: external init: %w", err)
	}
	return &InitSecret{suite: cs, secret: secret}, nil
}

// ConfirmationTag returns MAC(confirmation_key, confirmed_transcript_hash),
// the confirmation_tag of a Commit or GroupInfo (RFC 9420, Section 6.1).
func (s *EpochSecrets) ConfirmationTag(confirmedTranscriptHash []byte) []byte {
	return s.suite.MAC(s.confirmation, confirmedTranscriptHash)
}

// VerifyConfirmationTag reports whether tag is the confirmation tag of
// confirmedTranscriptHash, comparing in constant time.
func (s *EpochSecrets) VerifyConfirmationTag(confirmedTranscriptHash, tag []byte) bool {
	return hmac.Equal(s.ConfirmationTag(confirmedTranscriptHash), tag)
}

// MembershipTag returns MAC(membership_key, AuthenticatedContentTBM), the
// membership_tag of a PublicMessage sent by a member (RFC 9420, Section
// 6.2). Compare it with [hmac.Equal].
func (s *EpochSecrets) MembershipTag(authenticatedContentTBM []byte) []byte {
	return s.suite.MAC(s.membership, authenticatedContentTBM)
}

// SenderDataKey derives the key and nonce that protect the SenderData of a
// PrivateMessage whose content ciphertext is ciphertext (RFC 9420, Section
// 6.3.2). See [SenderDataKey].
func (s *EpochSecrets) SenderDataKey(ciphertext []byte) (key, nonce []byte) {
	return SenderDataKey(s.suite, s.senderData, ciphertext)
}

// SenderDataKey derives sender_data_key and sender_data_nonce from
// senderDataSecret and the first KDF.Nh bytes of the content ciphertext of
// a PrivateMessage, or all of it if it is shorter (RFC 9420, Section 6.3.2).
func SenderDataKey(cs hpke.CipherSuite, senderDataSecret, ciphertext []byte) (key, nonce []byte) {
	sample := ciphertext[:min(len(ciphertext), cs.HashSize())]
	key = cs.ExpandWithLabel(senderDataSecret, "key", sample, cs.AEADKeySize())
	nonce = cs.ExpandWithLabel(senderDataSecret, "nonce", sample, cs.AEADNonceSize())
	return key, nonce
}

// SecretTree moves the encryption secret into a new [SecretTree] for a group
// of leafCount leaves (see [NewSecretTree]), erasing it from s, as it is
// consumed by the tree (RFC 9420, Section 9.2). It returns [ErrErased] if the
// encryption secret has already been moved.
func (s *EpochSecrets) SecretTree(leafCount uint32, cfg *Config) (*SecretTree, error) {
	if s.encryption == nil {
		return nil, fmt.Errorf("keyschedule: encryption secret: %w", ErrErased)
	}
	t, err := NewSecretTree(s.suite, s.encryption, leafCount, cfg)
	if err != nil {
		return nil, err
	}
	erase(s.encryption)
	s.encryption = nil
	return t, nil
}

// Erase overwrites every secret held by s with zeros.
func (s *EpochSecrets) Erase() {
	for _, b := range []*[]byte{&s.senderData, &s.encryption, &s.exporter, &s.external,
		&s.confirmation, &s.membership, &s.resumption, &s.epochAuthenticator, &s.init} {
		erase(*b)
		*b = nil
	}
}

// String returns "[redacted]".
func (s *EpochSecrets) String() string { return redacted }

// GoString returns "[redacted]", so that %#v does not print secrets either.
func (s *EpochSecrets) GoString() string { return redacted }

// randomBytes returns n bytes from crypto/rand, which never fails.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
