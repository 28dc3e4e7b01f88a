package hpke

import "fmt"

// LabeledEncryptor encrypts to many public keys with one label and
// context, as [CipherSuite.EncryptWithLabel] does for each (RFC 9420,
// Section 5.1.3), but hashes the context once. The HPKE key schedule
// depends on its info only through info_hash (RFC 9180, Section 5.1), so a
// Welcome to k new members, whose context is the encrypted GroupInfo
// (RFC 9420, Section 12.4.3.1), costs one hash of it rather than k. Most
// users won't need it.
type LabeledEncryptor struct {
	cs       CipherSuite
	p        *params
	infoHash []byte
	info     []byte // for suites whose HPKE runs whole in crypto/hpke
}

// NewLabeledEncryptor returns a [LabeledEncryptor] for label (without the
// "MLS 1.0 " prefix) and context.
func (cs CipherSuite) NewLabeledEncryptor(label string, context []byte) (*LabeledEncryptor, error) {
	p := cs.params()
	if p == nil {
		return nil, ErrUnsupportedCipherSuite
	}
	info, err := labelPair(mlsLabelPrefix, label, context)
	if err != nil {
		return nil, fmt.Errorf("hpke: EncryptWithLabel: %w", err)
	}
	if p.std != nil {
		// crypto/hpke runs the key schedule itself: no shortcut.
		return &LabeledEncryptor{cs: cs, p: p, info: info}, nil
	}
	return &LabeledEncryptor{cs: cs, p: p, infoHash: labeledExtract(p.newHash, p.hpkeSuiteID, nil, "info_hash", info)}, nil
}

// Encrypt encrypts plaintext to pub: the result is that of
// EncryptWithLabel(pub, label, context, plaintext).
func (e *LabeledEncryptor) Encrypt(pub, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	p := e.p
	if p.std != nil {
		return p.std.seal(pub, e.info, nil, plaintext)
	}
	shared, enc, err := p.kem.encap(e.cs, pub)
	if err != nil {
		return nil, nil, err
	}
	// The key schedule of RFC 9180, Section 5.1, base mode, from the
	// precomputed info_hash.
	const modeBase = 0x00
	pskIDHash := labeledExtract(p.newHash, p.hpkeSuiteID, nil, "psk_id_hash", nil)
	ksc := make([]byte, 0, 1+len(pskIDHash)+len(e.infoHash))
	ksc = append(ksc, modeBase)
	ksc = append(ksc, pskIDHash...)
	ksc = append(ksc, e.infoHash...)
	secret := labeledExtract(p.newHash, p.hpkeSuiteID, shared, "secret", nil)
	clear(shared)
	defer clear(secret)
	key := labeledExpand(p.newHash, p.hpkeSuiteID, secret, "key", ksc, p.nk)
	defer clear(key)
	nonce := labeledExpand(p.newHash, p.hpkeSuiteID, secret, "base_nonce", ksc, p.nn)
	a, err := p.newAEAD(key)
	if err != nil {
		return nil, nil, err
	}
	return enc, a.Seal(nil, nonce, plaintext, nil), nil
}
