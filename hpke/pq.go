package hpke

import (
	stdhpke "crypto/hpke"
	"crypto/rand"
	"crypto/sha3"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
)

// The post-quantum KEMs of draft-ietf-hpke-pq. ML-KEM-768, ML-KEM-1024 and
// the three hybrids come from crypto/hpke, which implements them (with
// DeriveKeyPair) as the draft specifies; ML-KEM-512, which crypto/hpke does
// not offer, is built here on circl's FIPS 203 implementation.
var (
	kemMLKEM512       = &mlkem512KEM{}
	kemMLKEM768       = newStdKEM(stdhpke.MLKEM768(), 1184, 1088, 64)
	kemMLKEM1024      = newStdKEM(stdhpke.MLKEM1024(), 1568, 1568, 64)
	kemMLKEM768X25519 = newStdKEM(stdhpke.MLKEM768X25519(), 1184+32, 1088+32, 32)
	kemMLKEM768P256   = newStdKEM(stdhpke.MLKEM768P256(), 1184+65, 1088+65, 32)
	kemMLKEM1024P384  = newStdKEM(stdhpke.MLKEM1024P384(), 1568+97, 1568+97, 32)
)

// stdKEM is a KEM implemented by crypto/hpke. crypto/hpke does not expose
// Encap and Decap, so suites with such a KEM run HPKE through crypto/hpke
// as a whole (see stdSuite); the key operations are done here.
type stdKEM struct {
	k              stdhpke.KEM
	nPk, nEnc, nSk int
}

func newStdKEM(k stdhpke.KEM, nPk, nEnc, nSk int) *stdKEM {
	return &stdKEM{k: k, nPk: nPk, nEnc: nEnc, nSk: nSk}
}

func (k *stdKEM) kemID() uint16 { return k.k.ID() }

func (k *stdKEM) wrap(cs CipherSuite, priv stdhpke.PrivateKey) (*PrivateKey, error) {
	sk, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("hpke: serializing private key: %w", err)
	}
	// crypto/hpke may return its own copy of the seed: keep ours.
	return &PrivateKey{suite: cs, sk: append([]byte(nil), sk...), pk: priv.PublicKey().Bytes(), std: priv}, nil
}

func (k *stdKEM) generate(cs CipherSuite) (*PrivateKey, error) {
	priv, err := k.k.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("hpke: generating key pair: %w", err)
	}
	return k.wrap(cs, priv)
}

// deriveKeyPair implements DeriveKeyPair of draft-ietf-hpke-pq: the
// private key (a seed) is LabeledDerive(ikm, "DeriveKeyPair", "", Nsk)
// with SHAKE256, whatever the suite's KDF.
func (k *stdKEM) deriveKeyPair(cs CipherSuite, ikm []byte) (*PrivateKey, error) {
	priv, err := k.k.DeriveKeyPair(ikm)
	if err != nil {
		return nil, fmt.Errorf("hpke: DeriveKeyPair: %w", err)
	}
	return k.wrap(cs, priv)
}

func (k *stdKEM) newPrivateKey(cs CipherSuite, sk []byte) (*PrivateKey, error) {
	if len(sk) != k.nSk {
		return nil, ErrInvalidPrivateKey
	}
	priv, err := k.k.NewPrivateKey(sk)
	if err != nil {
		return nil, ErrInvalidPrivateKey
	}
	return k.wrap(cs, priv)
}

func (k *stdKEM) validatePublic(pk []byte) error {
	if len(pk) != k.nPk {
		return errInvalidKey
	}
	if _, err := k.k.NewPublicKey(pk); err != nil {
		return errInvalidKey
	}
	return nil
}

// errStdKEM is returned if code meant for KEMs implemented here calls
// Encap or Decap of a crypto/hpke KEM (an internal bug: such suites must go
// through params.std). It is an error rather than a panic so that the bug
// cannot crash an application.
var errStdKEM = errors.New("hpke: internal error: Encap or Decap of a crypto/hpke KEM")

func (k *stdKEM) encap(CipherSuite, []byte) ([]byte, []byte, error) { return nil, nil, errStdKEM }

func (k *stdKEM) decap([]byte, *PrivateKey) ([]byte, error) { return nil, errStdKEM }

// stdSuite is the crypto/hpke instantiation of a suite's HPKE.
type stdSuite struct {
	kem  *stdKEM
	kdf  stdhpke.KDF
	aead stdhpke.AEAD
}

func newStdSuite(k *stdKEM, kdfID uint16, a aeadID) *stdSuite {
	kdf, err := stdhpke.NewKDF(kdfID)
	if err != nil {
		panic("hpke: internal error: " + err.Error())
	}
	aead, err := stdhpke.NewAEAD(uint16(a))
	if err != nil {
		panic("hpke: internal error: " + err.Error())
	}
	return &stdSuite{kem: k, kdf: kdf, aead: aead}
}

func (s *stdSuite) sender(pub, info []byte) ([]byte, *stdhpke.Sender, error) {
	if len(pub) != s.kem.nPk {
		return nil, nil, ErrInvalidPublicKey
	}
	pk, err := s.kem.k.NewPublicKey(pub)
	if err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	enc, snd, err := stdhpke.NewSender(pk, s.kdf, s.aead, info)
	if err != nil {
		// Only an unusable public key (an X25519 low-order point) fails.
		return nil, nil, ErrInvalidPublicKey
	}
	return enc, snd, nil
}

func (s *stdSuite) recipient(k *PrivateKey, enc, info []byte) (*stdhpke.Recipient, error) {
	if k.std == nil || len(enc) != s.kem.nEnc {
		return nil, ErrDecryption
	}
	r, err := stdhpke.NewRecipient(enc, k.std, s.kdf, s.aead, info)
	if err != nil {
		return nil, ErrDecryption
	}
	return r, nil
}

func (s *stdSuite) seal(pub, info, aad, plaintext []byte) ([]byte, []byte, error) {
	enc, snd, err := s.sender(pub, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err := snd.Seal(aad, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke: sealing: %w", err)
	}
	return enc, ct, nil
}

func (s *stdSuite) open(k *PrivateKey, enc, info, aad, ciphertext []byte) ([]byte, error) {
	r, err := s.recipient(k, enc, info)
	if err != nil {
		return nil, err
	}
	pt, err := r.Open(aad, ciphertext)
	if err != nil {
		return nil, ErrDecryption
	}
	return pt, nil
}

func (s *stdSuite) sealExport(pub, info, exporterContext []byte, length int) ([]byte, []byte, error) {
	enc, snd, err := s.sender(pub, info)
	if err != nil {
		return nil, nil, err
	}
	secret, err := snd.Export(string(exporterContext), length)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke: export: %w", err)
	}
	return enc, secret, nil
}

func (s *stdSuite) openExport(k *PrivateKey, enc, info, exporterContext []byte, length int) ([]byte, error) {
	r, err := s.recipient(k, enc, info)
	if err != nil {
		return nil, err
	}
	secret, err := r.Export(string(exporterContext), length)
	if err != nil {
		return nil, fmt.Errorf("hpke: export: %w", err)
	}
	return secret, nil
}

// mlkem512KEM is ML-KEM-512 as an HPKE KEM (draft-ietf-hpke-pq, KEM
// 0x0040), on circl's FIPS 203 implementation. The private key is the
// 64-byte seed d || z of ML-KEM.KeyGen_internal; enc is the ML-KEM
// ciphertext and the shared secret is ML-KEM's.
type mlkem512KEM struct{}

const (
	mlkem512ID   = 0x0040
	mlkem512NSk  = mlkem512.KeySeedSize // 64
	mlkem512NPk  = mlkem512.PublicKeySize
	mlkem512NEnc = mlkem512.CiphertextSize
)

func (mlkem512KEM) kemID() uint16 { return mlkem512ID }

func (m mlkem512KEM) generate(cs CipherSuite) (*PrivateKey, error) {
	seed := make([]byte, mlkem512NSk)
	rand.Read(seed)
	defer clear(seed)
	return m.newPrivateKey(cs, seed)
}

// deriveKeyPair implements DeriveKeyPair of draft-ietf-hpke-pq for ML-KEM:
// the seed is LabeledDerive(ikm, "DeriveKeyPair", "", 64) with SHAKE256
// and suite_id "KEM" || I2OSP(0x0040, 2).
func (m mlkem512KEM) deriveKeyPair(cs CipherSuite, ikm []byte) (*PrivateKey, error) {
	seed := shakeLabeledDerive([]byte{'K', 'E', 'M', 0x00, mlkem512ID}, ikm, "DeriveKeyPair", nil, mlkem512NSk)
	defer clear(seed)
	return m.newPrivateKey(cs, seed)
}

func (mlkem512KEM) newPrivateKey(cs CipherSuite, sk []byte) (*PrivateKey, error) {
	if len(sk) != mlkem512NSk {
		return nil, ErrInvalidPrivateKey
	}
	pub, priv := mlkem512.NewKeyFromSeed(sk)
	pk := make([]byte, mlkem512NPk)
	pub.Pack(pk)
	return &PrivateKey{suite: cs, sk: append([]byte(nil), sk...), pk: pk, ml512: priv}, nil
}

func (mlkem512KEM) validatePublic(pk []byte) error {
	var pub mlkem512.PublicKey
	// Unpack checks the length and the modulus check of FIPS 203,
	// Section 7.2.
	if len(pk) != mlkem512NPk || pub.Unpack(pk) != nil {
		return errInvalidKey
	}
	return nil
}

func (m mlkem512KEM) encap(_ CipherSuite, pkR []byte) (shared, enc []byte, err error) {
	return m.encapWithSeed(pkR, nil)
}

// encapWithSeed encapsulates with the given 32-byte randomness, or with
// fresh randomness if seed is nil. Tests use a fixed seed for vectors.
func (mlkem512KEM) encapWithSeed(pkR, seed []byte) (shared, enc []byte, err error) {
	var pub mlkem512.PublicKey
	if len(pkR) != mlkem512NPk || pub.Unpack(pkR) != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	enc = make([]byte, mlkem512NEnc)
	shared = make([]byte, mlkem512.SharedKeySize)
	pub.EncapsulateTo(enc, shared, seed)
	return shared, enc, nil
}

func (mlkem512KEM) decap(enc []byte, skR *PrivateKey) ([]byte, error) {
	if len(enc) != mlkem512NEnc || skR.ml512 == nil {
		return nil, ErrDecryption
	}
	shared := make([]byte, mlkem512.SharedKeySize)
	skR.ml512.DecapsulateTo(shared, enc)
	return shared, nil
}

// shakeLabeledDerive implements LabeledDerive of draft-ietf-hpke-hpke
// (the one-stage KDF used by draft-ietf-hpke-pq's DeriveKeyPair) with
// SHAKE256: SHAKE256(ikm || "HPKE-v1" || suite_id || I2OSP(len(label), 2) ||
// label || I2OSP(L, 2) || context, L).
func shakeLabeledDerive(suiteID, ikm []byte, label string, context []byte, length int) []byte {
	h := sha3.NewSHAKE256()
	h.Write(ikm)
	h.Write([]byte(hpkeVersion))
	h.Write(suiteID)
	h.Write([]byte{byte(len(label) >> 8), byte(len(label))})
	h.Write([]byte(label))
	h.Write([]byte{byte(length >> 8), byte(length)})
	h.Write(context)
	out := make([]byte, length)
	h.Read(out)
	return out
}
