package hpke

import (
	"crypto/ecdh"
	stdhpke "crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"github.com/cloudflare/circl/dh/x25519"
	"github.com/cloudflare/circl/dh/x448"
	"github.com/cloudflare/circl/kem/mlkem/mlkem512"
)

// PrivateKey is an HPKE private key (a decapsulation key) of one cipher
// suite. It must be kept secret. It prints as "[redacted]" with every fmt
// verb. A PrivateKey is immutable and safe for concurrent use.
type PrivateKey struct {
	suite CipherSuite
	sk    []byte           // serialized private key, Nsk bytes
	pk    []byte           // serialized public key, Npk bytes
	ecdh  *ecdh.PrivateKey // cached key for crypto/ecdh backends, else nil
	std   stdhpke.PrivateKey
	ml512 *mlkem512.PrivateKey
}

// Bytes returns the serialized private key (Nsk bytes), the form accepted by
// [CipherSuite.NewPrivateKey]: for the KEMs of draft-ietf-hpke-pq, the
// 64-byte ML-KEM seed d || z or the 32-byte seed of a hybrid KEM. The result
// must be kept secret; the caller owns it. For X25519 and X448 the bytes are returned exactly as they were
// generated, derived or passed to NewPrivateKey, without the clamping that
// RFC 9180, Section 7.1.2 describes; clamping happens inside the DH function,
// so both forms denote the same key.
func (k *PrivateKey) Bytes() []byte { return append([]byte(nil), k.sk...) }

// PublicKey returns the serialized public key (Npk bytes) of k. The caller
// owns the returned slice.
func (k *PrivateKey) PublicKey() []byte { return append([]byte(nil), k.pk...) }

// Suite returns the cipher suite k belongs to.
func (k *PrivateKey) Suite() CipherSuite { return k.suite }

// String returns "[redacted]", so that the key never appears in logs.
func (k PrivateKey) String() string { return redacted }

// GoString returns "[redacted]", so that the key never appears in logs.
func (k PrivateKey) GoString() string { return redacted }

// Format implements [fmt.Formatter]; every verb prints "[redacted]".
func (k PrivateKey) Format(f fmt.State, verb rune) { f.Write([]byte(redacted)) }

const redacted = "[redacted]"

// kemScheme is an HPKE KEM: a DHKEM of RFC 9180 ([kem]), ML-KEM-512 from
// circl ([mlkem512KEM]) or a post-quantum KEM of crypto/hpke ([stdKEM]).
type kemScheme interface {
	kemID() uint16
	// generate returns a fresh random key pair (GenerateKeyPair).
	generate(cs CipherSuite) (*PrivateKey, error)
	// deriveKeyPair implements DeriveKeyPair of the KEM's specification.
	deriveKeyPair(cs CipherSuite, ikm []byte) (*PrivateKey, error)
	// newPrivateKey implements DeserializePrivateKey.
	newPrivateKey(cs CipherSuite, sk []byte) (*PrivateKey, error)
	// validatePublic checks a serialized public key (DeserializePublicKey).
	validatePublic(pk []byte) error
	// encap and decap implement Encap and Decap. A stdKEM has neither
	// (crypto/hpke does not expose them); its suites use params.std.
	encap(cs CipherSuite, pkR []byte) (shared, enc []byte, err error)
	decap(enc []byte, skR *PrivateKey) ([]byte, error)
}

// kem describes a DHKEM (RFC 9180, Section 4.1) and its DH group.
type kem struct {
	id      uint16
	nSecret int // Nsecret
	nPk     int // Npk == Nenc
	nSk     int // Nsk
	newHash func() hash.Hash
	// suiteID is "KEM" || I2OSP(kem_id, 2) (RFC 9180, Section 4.1).
	suiteID []byte
	// bitmask is the DeriveKeyPair mask of RFC 9180, Section 7.1.3 for NIST
	// curves; zero for X25519 and X448.
	bitmask byte
	impl    dhImpl
}

// dhImpl is a DH group backend.
type dhImpl interface {
	// newPrivate checks that sk (of Nsk bytes) is a valid private key and
	// returns its public key and, for crypto/ecdh backends, the parsed key.
	newPrivate(sk []byte) (pk []byte, ek *ecdh.PrivateKey, err error)
	// generate returns a fresh random key pair.
	generate() (sk, pk []byte, ek *ecdh.PrivateKey, err error)
	// validatePublic checks that pk is a valid serialized public key.
	validatePublic(pk []byte) error
	// dh returns DH(k, pk); it fails on invalid pk or an all-zero result.
	dh(k *PrivateKey, pk []byte) ([]byte, error)
}

func newKEM(id uint16, nSecret, nPk, nSk int, h func() hash.Hash, bitmask byte, impl dhImpl) *kem {
	return &kem{id: id, nSecret: nSecret, nPk: nPk, nSk: nSk, newHash: h,
		suiteID: []byte{'K', 'E', 'M', byte(id >> 8), byte(id)}, bitmask: bitmask, impl: impl}
}

// The KEMs of RFC 9180, Section 7.1 used by the MLS suites.
var (
	kemP256 = newKEM(0x0010, 32, 65, 32, sha256.New, 0xff, ecdhImpl{ecdh.P256()})
	kemP384 = newKEM(0x0011, 48, 97, 48, sha512.New384, 0xff, ecdhImpl{ecdh.P384()})
	kemP521 = newKEM(0x0012, 64, 133, 66, sha512.New, 0x01, ecdhImpl{ecdh.P521()})
	kemX448 = newKEM(0x0021, 64, 56, 56, sha512.New, 0, x448Impl{})

	// Two backends exist for X25519. BenchmarkBackend compares them and
	// kemX25519 points at the faster one.
	kemX25519Stdlib = newKEM(0x0020, 32, 32, 32, sha256.New, 0, ecdhImpl{ecdh.X25519()})
	kemX25519Circl  = newKEM(0x0020, 32, 32, 32, sha256.New, 0, x25519Impl{})
	kemX25519       = kemX25519Circl
)

func (k *kem) kemID() uint16 { return k.id }

func (k *kem) validatePublic(pk []byte) error { return k.impl.validatePublic(pk) }

var errInvalidKey = errors.New("invalid key")

// ecdhImpl is the crypto/ecdh backend (X25519, P-256, P-384, P-521).
type ecdhImpl struct{ curve ecdh.Curve }

func (e ecdhImpl) newPrivate(sk []byte) ([]byte, *ecdh.PrivateKey, error) {
	k, err := e.curve.NewPrivateKey(sk)
	if err != nil {
		return nil, nil, errInvalidKey
	}
	return k.PublicKey().Bytes(), k, nil
}

func (e ecdhImpl) generate() ([]byte, []byte, *ecdh.PrivateKey, error) {
	k, err := e.curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	return k.Bytes(), k.PublicKey().Bytes(), k, nil
}

func (e ecdhImpl) validatePublic(pk []byte) error {
	if _, err := e.curve.NewPublicKey(pk); err != nil {
		return errInvalidKey
	}
	return nil
}

func (e ecdhImpl) dh(k *PrivateKey, pk []byte) ([]byte, error) {
	pub, err := e.curve.NewPublicKey(pk)
	if err != nil {
		return nil, errInvalidKey
	}
	priv := k.ecdh
	if priv == nil || priv.Curve() != e.curve {
		if priv, err = e.curve.NewPrivateKey(k.sk); err != nil {
			return nil, errInvalidKey
		}
	}
	out, err := priv.ECDH(pub)
	if err != nil {
		// crypto/ecdh rejects an all-zero X25519 output (a low-order point).
		return nil, errInvalidKey
	}
	return out, nil
}

// x25519Impl is the circl/dh/x25519 backend.
type x25519Impl struct{}

func (x25519Impl) newPrivate(sk []byte) ([]byte, *ecdh.PrivateKey, error) {
	if len(sk) != x25519.Size {
		return nil, nil, errInvalidKey
	}
	var s, p x25519.Key
	copy(s[:], sk)
	x25519.KeyGen(&p, &s)
	clear(s[:])
	return p[:], nil, nil
}

func (i x25519Impl) generate() ([]byte, []byte, *ecdh.PrivateKey, error) {
	sk := make([]byte, x25519.Size)
	rand.Read(sk)
	pk, _, err := i.newPrivate(sk)
	return sk, pk, nil, err
}

func (x25519Impl) validatePublic(pk []byte) error {
	if len(pk) != x25519.Size {
		return errInvalidKey
	}
	return nil
}

func (x25519Impl) dh(k *PrivateKey, pk []byte) ([]byte, error) {
	if len(pk) != x25519.Size || len(k.sk) != x25519.Size {
		return nil, errInvalidKey
	}
	var s, p, out x25519.Key
	copy(s[:], k.sk)
	copy(p[:], pk)
	ok := x25519.Shared(&out, &s, &p) // false for low-order points (all-zero output)
	clear(s[:])
	if !ok {
		return nil, errInvalidKey
	}
	return out[:], nil
}

// x448Impl is the circl/dh/x448 backend (the standard library has no X448).
type x448Impl struct{}

func (x448Impl) newPrivate(sk []byte) ([]byte, *ecdh.PrivateKey, error) {
	if len(sk) != x448.Size {
		return nil, nil, errInvalidKey
	}
	var s, p x448.Key
	copy(s[:], sk)
	x448.KeyGen(&p, &s)
	clear(s[:])
	return p[:], nil, nil
}

func (i x448Impl) generate() ([]byte, []byte, *ecdh.PrivateKey, error) {
	sk := make([]byte, x448.Size)
	rand.Read(sk)
	pk, _, err := i.newPrivate(sk)
	return sk, pk, nil, err
}

func (x448Impl) validatePublic(pk []byte) error {
	if len(pk) != x448.Size {
		return errInvalidKey
	}
	return nil
}

func (x448Impl) dh(k *PrivateKey, pk []byte) ([]byte, error) {
	if len(pk) != x448.Size || len(k.sk) != x448.Size {
		return nil, errInvalidKey
	}
	var s, p, out x448.Key
	copy(s[:], k.sk)
	copy(p[:], pk)
	ok := x448.Shared(&out, &s, &p) // false for low-order points (all-zero output)
	clear(s[:])
	if !ok {
		return nil, errInvalidKey
	}
	return out[:], nil
}

// newPrivateKey builds a PrivateKey of suite cs from serialized bytes.
func (k *kem) newPrivateKey(cs CipherSuite, sk []byte) (*PrivateKey, error) {
	switch {
	case len(sk) == k.nSk:
		sk = append([]byte(nil), sk...)
	case k.bitmask != 0 && len(sk) > 0 && len(sk) < k.nSk:
		// A NIST-curve scalar whose leading zero bytes were stripped,
		// as some encoders (and the official MLS vectors) do: left-pad.
		sk = append(make([]byte, k.nSk-len(sk), k.nSk), sk...)
	default:
		return nil, ErrInvalidPrivateKey
	}
	pk, ek, err := k.impl.newPrivate(sk)
	if err != nil {
		clear(sk)
		return nil, ErrInvalidPrivateKey
	}
	return &PrivateKey{suite: cs, sk: sk, pk: pk, ecdh: ek}, nil
}

func (k *kem) generate(cs CipherSuite) (*PrivateKey, error) {
	sk, pk, ek, err := k.impl.generate()
	if err != nil {
		return nil, fmt.Errorf("hpke: generating key pair: %w", err)
	}
	return &PrivateKey{suite: cs, sk: sk, pk: pk, ecdh: ek}, nil
}

// deriveKeyPair implements DeriveKeyPair of RFC 9180, Section 7.1.3.
func (k *kem) deriveKeyPair(cs CipherSuite, ikm []byte) (*PrivateKey, error) {
	prk := labeledExtract(k.newHash, k.suiteID, nil, "dkp_prk", ikm)
	defer clear(prk)
	if k.bitmask == 0 {
		// X25519 and X448: any Nsk-byte string is a private key.
		sk := labeledExpand(k.newHash, k.suiteID, prk, "sk", nil, k.nSk)
		defer clear(sk)
		return k.newPrivateKey(cs, sk)
	}
	// NIST curves: rejection sampling of a scalar in [1, order-1].
	for counter := 0; counter < 256; counter++ {
		sk := labeledExpand(k.newHash, k.suiteID, prk, "candidate", []byte{byte(counter)}, k.nSk)
		sk[0] &= k.bitmask
		priv, err := k.newPrivateKey(cs, sk)
		clear(sk)
		if err == nil {
			return priv, nil
		}
	}
	// Probability about 2^-8192 or less; RFC 9180 calls it DeriveKeyPairError.
	return nil, errors.New("hpke: DeriveKeyPair: no valid candidate")
}

// encap implements Encap of DHKEM (RFC 9180, Section 4.1).
func (k *kem) encap(cs CipherSuite, pkR []byte) (shared, enc []byte, err error) {
	if err := k.impl.validatePublic(pkR); err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	e, err := k.generate(cs)
	if err != nil {
		return nil, nil, err
	}
	defer clear(e.sk)
	dh, err := k.impl.dh(e, pkR)
	if err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	defer clear(dh)
	enc = e.pk
	return k.extractAndExpand(dh, enc, pkR), enc, nil
}

// decap implements Decap of DHKEM (RFC 9180, Section 4.1).
func (k *kem) decap(enc []byte, skR *PrivateKey) ([]byte, error) {
	dh, err := k.impl.dh(skR, enc)
	if err != nil {
		return nil, ErrDecryption
	}
	defer clear(dh)
	return k.extractAndExpand(dh, enc, skR.pk), nil
}

func (k *kem) extractAndExpand(dh, enc, pkR []byte) []byte {
	prk := labeledExtract(k.newHash, k.suiteID, nil, "eae_prk", dh)
	defer clear(prk)
	kemContext := make([]byte, 0, len(enc)+len(pkR))
	kemContext = append(append(kemContext, enc...), pkR...)
	return labeledExpand(k.newHash, k.suiteID, prk, "shared_secret", kemContext, k.nSecret)
}

// labeledExtract implements LabeledExtract of RFC 9180, Section 4.
func labeledExtract(h func() hash.Hash, suiteID, salt []byte, label string, ikm []byte) []byte {
	return labeledExtractScratch(h, suiteID, salt, label, ikm)
}

// labeledExpand implements LabeledExpand of RFC 9180, Section 4.
func labeledExpand(h func() hash.Hash, suiteID, prk []byte, label string, info []byte, length int) []byte {
	if length > 0xffff {
		panic("hpke: internal error: LabeledExpand length out of range")
	}
	buf := make([]byte, 0, 2+len(hpkeVersion)+len(suiteID)+len(label)+len(info))
	buf = append(buf, byte(length>>8), byte(length))
	buf = append(buf, hpkeVersion...)
	buf = append(buf, suiteID...)
	buf = append(buf, label...)
	buf = append(buf, info...)
	return expand(h, prk, buf, length)
}

const hpkeVersion = "HPKE-v1"
