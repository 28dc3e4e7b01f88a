package hpke

import "fmt"

// GenerateKeyPair returns a fresh random HPKE key pair for the suite's KEM.
func (cs CipherSuite) GenerateKeyPair() (*PrivateKey, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	return p.kem.generate(cs)
}

// DeriveKeyPair deterministically derives an HPKE key pair from the input
// keying material ikm, as specified in RFC 9180, Section 7.1.3, for the
// suite's KEM (for the ML-KEM and hybrid KEMs, as draft-ietf-hpke-pq
// specifies: a SHAKE256 LabeledDerive of the seed that is the private key). ikm may have any length; MLS passes Nh-byte secrets
// (RFC 9420, Section 5.1). ikm must be kept secret and should have at least
// Nsk bytes of entropy.
func (cs CipherSuite) DeriveKeyPair(ikm []byte) (*PrivateKey, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	return p.kem.deriveKeyPair(cs, ikm)
}

// NewPrivateKey decodes a serialized HPKE private key of Nsk bytes
// (DeserializePrivateKey of RFC 9180, Section 7.1.2; for the KEMs of
// draft-ietf-hpke-pq the 64-byte ML-KEM seed or the 32-byte hybrid seed). It returns an error
// matching [ErrInvalidPrivateKey] if b has the wrong length or, for NIST
// curves, is zero or not below the group order. A NIST-curve scalar shorter
// than Nsk, as left by encoders that strip leading zero bytes, is accepted
// and left-padded. The caller may reuse b.
func (cs CipherSuite) NewPrivateKey(b []byte) (*PrivateKey, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	return p.kem.newPrivateKey(cs, b)
}

// ValidatePublicKey checks that pub is a well-formed serialized HPKE public
// key of the suite's KEM: an uncompressed point on the curve for NIST curves,
// a string of the right length for X25519 and X448 (low-order points are
// rejected when they are used, by [CipherSuite.Seal] and the other
// encryption functions). It returns an error matching [ErrInvalidPublicKey].
func (cs CipherSuite) ValidatePublicKey(pub []byte) error {
	p := cs.params()
	if p == nil {
		return ErrUnsupportedCipherSuite
	}
	if p.kem.validatePublic(pub) != nil {
		return ErrInvalidPublicKey
	}
	return nil
}

// hpkeContext holds the outputs of KeySchedule (RFC 9180, Section 5.1).
type hpkeContext struct {
	key, baseNonce, exporterSecret []byte
}

func (c *hpkeContext) clear() {
	clear(c.key)
	clear(c.baseNonce)
	clear(c.exporterSecret)
}

// keySchedule implements KeySchedule of RFC 9180, Section 5.1, in base mode
// (mode_base, empty psk and psk_id). It derives the AEAD key and nonce only
// if withAEAD is set and the exporter secret only if withExporter is set.
func (p *params) keySchedule(shared, info []byte, withAEAD, withExporter bool) *hpkeContext {
	const modeBase = 0x00
	pskIDHash := labeledExtract(p.newHash, p.hpkeSuiteID, nil, "psk_id_hash", nil)
	infoHash := labeledExtract(p.newHash, p.hpkeSuiteID, nil, "info_hash", info)
	ksc := make([]byte, 0, 1+len(pskIDHash)+len(infoHash))
	ksc = append(ksc, modeBase)
	ksc = append(ksc, pskIDHash...)
	ksc = append(ksc, infoHash...)
	secret := labeledExtract(p.newHash, p.hpkeSuiteID, shared, "secret", nil)
	defer clear(secret)
	c := new(hpkeContext)
	if withAEAD {
		c.key = labeledExpand(p.newHash, p.hpkeSuiteID, secret, "key", ksc, p.nk)
		c.baseNonce = labeledExpand(p.newHash, p.hpkeSuiteID, secret, "base_nonce", ksc, p.nn)
	}
	if withExporter {
		c.exporterSecret = labeledExpand(p.newHash, p.hpkeSuiteID, secret, "exp", ksc, p.nh)
	}
	return c
}

// export implements Context.Export of RFC 9180, Section 5.3.
func (p *params) export(c *hpkeContext, exporterContext []byte, length int) ([]byte, error) {
	if length < 0 || length > 255*p.nh {
		return nil, fmt.Errorf("hpke: export length %d out of range", length)
	}
	return labeledExpand(p.newHash, p.hpkeSuiteID, c.exporterSecret, "sec", exporterContext, length), nil
}

// Seal encrypts plaintext to the serialized public key pub with HPKE in base
// mode (SealBase of RFC 9180, Section 6.1) using the suite's KEM, KDF and
// AEAD, with the given info and aad. It returns the KEM output (enc) and the
// ciphertext. An unusable pub gives an error matching [ErrInvalidPublicKey].
func (cs CipherSuite) Seal(pub, info, aad, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	p := cs.params()
	if p == nil {
		return nil, nil, ErrUnsupportedCipherSuite
	}
	return p.seal(cs, pub, info, aad, plaintext)
}

func (p *params) seal(cs CipherSuite, pub, info, aad, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	if p.std != nil {
		return p.std.seal(pub, info, aad, plaintext)
	}
	shared, enc, err := p.kem.encap(cs, pub)
	if err != nil {
		return nil, nil, err
	}
	c := p.keySchedule(shared, info, true, false)
	clear(shared)
	defer c.clear()
	a, err := p.newAEAD(c.key)
	if err != nil {
		return nil, nil, err
	}
	// The sequence number is 0, so the nonce is base_nonce (Section 5.2).
	return enc, a.Seal(nil, c.baseNonce, plaintext, aad), nil
}

// Open decrypts a ciphertext produced by [CipherSuite.Seal] for k's public
// key (OpenBase of RFC 9180, Section 6.1). Every failure, including a
// malformed kemOutput, returns an error matching [ErrDecryption].
func (cs CipherSuite) Open(k *PrivateKey, kemOutput, info, aad, ciphertext []byte) ([]byte, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	if k == nil || k.suite.params() == nil || k.suite.params().kem.kemID() != p.kem.kemID() {
		return nil, ErrInvalidPrivateKey
	}
	return p.open(k, kemOutput, info, aad, ciphertext)
}

func (p *params) open(k *PrivateKey, kemOutput, info, aad, ciphertext []byte) ([]byte, error) {
	if p.std != nil {
		return p.std.open(k, kemOutput, info, aad, ciphertext)
	}
	shared, err := p.kem.decap(kemOutput, k)
	if err != nil {
		return nil, ErrDecryption
	}
	c := p.keySchedule(shared, info, true, false)
	clear(shared)
	defer c.clear()
	return p.aeadOpen(c.key, c.baseNonce, aad, ciphertext)
}

// SealExport sets up an HPKE sender context for pub in base mode (SetupBaseS
// of RFC 9180, Section 5.1.1) and returns its KEM output together with
// Export(exporterContext, length) of that context (Section 5.3). RFC 9420,
// Section 8.3 uses it to derive the init_secret of an external join. The
// secret must be kept secret; length must be at most 255*Nh.
func (cs CipherSuite) SealExport(pub, info, exporterContext []byte, length int) (kemOutput, secret []byte, err error) {
	p := cs.params()
	if p == nil {
		return nil, nil, ErrUnsupportedCipherSuite
	}
	return p.sealExport(cs, pub, info, exporterContext, length)
}

func (p *params) sealExport(cs CipherSuite, pub, info, exporterContext []byte, length int) (kemOutput, secret []byte, err error) {
	if length < 0 || length > 255*p.nh {
		return nil, nil, fmt.Errorf("hpke: export length %d out of range", length)
	}
	if p.std != nil {
		return p.std.sealExport(pub, info, exporterContext, length)
	}
	shared, enc, err := p.kem.encap(cs, pub)
	if err != nil {
		return nil, nil, err
	}
	c := p.keySchedule(shared, info, false, true)
	clear(shared)
	defer c.clear()
	secret, err = p.export(c, exporterContext, length)
	if err != nil {
		return nil, nil, err
	}
	return enc, secret, nil
}

// OpenExport sets up an HPKE recipient context for kemOutput with k in base
// mode (SetupBaseR of RFC 9180, Section 5.1.1) and returns
// Export(exporterContext, length) of that context. A malformed kemOutput
// returns an error matching [ErrDecryption]. The secret must be kept secret.
func (cs CipherSuite) OpenExport(k *PrivateKey, kemOutput, info, exporterContext []byte, length int) ([]byte, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	if k == nil || k.suite.params() == nil || k.suite.params().kem.kemID() != p.kem.kemID() {
		return nil, ErrInvalidPrivateKey
	}
	return p.openExport(k, kemOutput, info, exporterContext, length)
}

func (p *params) openExport(k *PrivateKey, kemOutput, info, exporterContext []byte, length int) ([]byte, error) {
	if length < 0 || length > 255*p.nh {
		return nil, fmt.Errorf("hpke: export length %d out of range", length)
	}
	if p.std != nil {
		return p.std.openExport(k, kemOutput, info, exporterContext, length)
	}
	shared, err := p.kem.decap(kemOutput, k)
	if err != nil {
		return nil, ErrDecryption
	}
	c := p.keySchedule(shared, info, false, true)
	clear(shared)
	defer c.clear()
	return p.export(c, exporterContext, length)
}
