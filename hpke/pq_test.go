package hpke

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/cloudflare/circl/sign/mldsa/mldsa87"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pqTestBase is the first private-use code point (RFC 9420, Section 17.1)
// under which the tests of this package register PostQuantumSuites().
const pqTestBase = 0xF100

func init() {
	for i, def := range PostQuantumSuites() {
		if err := RegisterCipherSuite(CipherSuite(pqTestBase+i), def); err != nil {
			panic(err)
		}
	}
}

// pqSuites returns the code points of the registered PQ test suites.
func pqSuites() []CipherSuite {
	var out []CipherSuite
	for i := range PostQuantumSuites() {
		out = append(out, CipherSuite(pqTestBase+i))
	}
	return out
}

// testSuites returns RFC 9420's suites and the PQ test suites.
func testSuites() []CipherSuite { return append(CipherSuites(), pqSuites()...) }

func TestPostQuantumSuites(t *testing.T) {
	defs := PostQuantumSuites()
	require.Len(t, defs, 11+12+1)
	names := map[string]bool{}
	for i, def := range defs {
		assert.False(t, names[def.Name], "duplicate name %s", def.Name)
		names[def.Name] = true
		cs := CipherSuite(pqTestBase + i)
		got, ok := cs.Definition()
		require.True(t, ok)
		assert.Equal(t, def, got)
		assert.Equal(t, def.Name, cs.String())
		// The name states the hash and, for the draft's suites, the AEAD.
		hash := map[KDF]string{KDF_HKDF_SHA256: "SHA256", KDF_HKDF_SHA384: "SHA384", KDF_HKDF_SHA512: "SHA512"}[def.KDF]
		assert.Contains(t, def.Name, "_"+hash+"_", def.Name)
		assert.Equal(t, map[KDF]int{KDF_HKDF_SHA256: 32, KDF_HKDF_SHA384: 48, KDF_HKDF_SHA512: 64}[def.KDF], cs.HashSize())
	}
	// The built-in suites have definitions too.
	def, ok := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Definition()
	require.True(t, ok)
	assert.Equal(t, SuiteDefinition{Name: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		KEM: KEM_DHKEM_X25519_HKDF_SHA256, KDF: KDF_HKDF_SHA256, AEAD: AEAD_AES128GCM, Signature: Ed25519}, def)
	_, ok = CipherSuite(0xF0FF).Definition()
	assert.False(t, ok)
}

func TestRegisterCipherSuite(t *testing.T) {
	xwing := MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519
	// Idempotent for the same components, whatever the name.
	require.NoError(t, RegisterCipherSuite(pqTestBase, xwing))
	renamed := xwing
	renamed.Name = "other name"
	require.NoError(t, RegisterCipherSuite(pqTestBase, renamed))
	assert.Equal(t, xwing.Name, CipherSuite(pqTestBase).String(), "the first registration stays")

	// A taken code point cannot be redefined.
	err := RegisterCipherSuite(pqTestBase, MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87)
	assert.ErrorIs(t, err, ErrCipherSuiteTaken)
	for _, cs := range CipherSuites() {
		assert.ErrorIs(t, RegisterCipherSuite(cs, xwing), ErrCipherSuiteTaken, "%v", cs)
	}
	d, _ := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.Definition()
	assert.ErrorIs(t, RegisterCipherSuite(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, d), ErrCipherSuiteTaken)

	// Reserved code points and unknown components.
	for _, cs := range []CipherSuite{0, 0x0A0A, 0x1A1A, 0xEAEA} {
		assert.ErrorIs(t, RegisterCipherSuite(cs, xwing), ErrInvalidSuiteDefinition, "0x%04x", uint16(cs))
	}
	assert.False(t, isGREASE(0x0A0B) || isGREASE(0xFAFA) || isGREASE(0xF0F0) || isGREASE(0x1A2A))
	for name, bad := range map[string]SuiteDefinition{
		"KEM":       {KEM: 0x0030, KDF: KDF_HKDF_SHA256, AEAD: AEAD_AES128GCM, Signature: Ed25519},
		"KDF":       {KEM: KEM_MLKEM768, KDF: 0x0011, AEAD: AEAD_AES128GCM, Signature: Ed25519},
		"AEAD":      {KEM: KEM_MLKEM768, KDF: KDF_HKDF_SHA256, AEAD: 0xFFFF, Signature: Ed25519},
		"signature": {KEM: KEM_MLKEM768, KDF: KDF_HKDF_SHA256, AEAD: AEAD_AES128GCM, Signature: 0x0804},
		"zero":      {},
	} {
		assert.ErrorIs(t, RegisterCipherSuite(0xF0F0, bad), ErrInvalidSuiteDefinition, name)
	}
	assert.False(t, CipherSuite(0xF0F0).Supported(), "a failed registration leaves no trace")

	// A definition may combine any implemented components, including RFC
	// 9180 KEMs; a later change to the caller's value does not change it.
	custom := SuiteDefinition{KEM: KEM_DHKEM_X448_HKDF_SHA512, KDF: KDF_HKDF_SHA256, AEAD: AEAD_ChaCha20Poly1305, Signature: MLDSA65}
	require.NoError(t, RegisterCipherSuite(0xF0F1, custom))
	custom.KEM = KEM_MLKEM512
	got, _ := CipherSuite(0xF0F1).Definition()
	assert.Equal(t, KEM_DHKEM_X448_HKDF_SHA512, got.KEM)
	assert.Equal(t, "CipherSuite(0xf0f1)", got.Name)
	assert.Contains(t, RegisteredCipherSuites(), CipherSuite(0xF0F1))
	k, err := CipherSuite(0xF0F1).GenerateKeyPair()
	require.NoError(t, err)
	testKeyPair(t, 0xF0F1, k)
}

// TestRegisterDeployedCodePoints registers the ts-mls suites at the code
// points ts-mls uses (77-88) and shows the collision with OpenMLS's X-Wing
// suite at 0x004D = 77: a process can speak one of the two at that value.
func TestRegisterDeployedCodePoints(t *testing.T) {
	defs := PostQuantumSuites()[11:23]
	for i, def := range defs {
		require.NoError(t, RegisterCipherSuite(CipherSuite(77+i), def), def.Name)
		got, _ := CipherSuite(77 + i).Definition()
		assert.Equal(t, def, got)
	}
	assert.Equal(t, MLS_128_MLKEM512_AES128GCM_SHA256_Ed25519.Name, CipherSuite(0x004D).String())
	assert.ErrorIs(t, RegisterCipherSuite(0x004D, MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519), ErrCipherSuiteTaken)
}

// TestRegisterConcurrent registers and looks up suites from many
// goroutines; run it with -race.
func TestRegisterConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Half the goroutines race for the same code point with the
			// same definition, the others each take their own.
			cs := CipherSuite(0xF200 + i%2*i)
			if err := RegisterCipherSuite(cs, MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				_ = CipherSuite(0xF200 + i).Supported()
				_ = MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.HashSize()
				_ = RegisteredCipherSuites()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 32 {
		assert.Equal(t, i%2 == 1 || i == 0, CipherSuite(0xF200+i).Supported(), i)
	}
	// Racing different definitions for one code point: exactly one wins.
	var wins sync.Map
	for i, def := range PostQuantumSuites()[:8] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if RegisterCipherSuite(0xF300, def) == nil {
				wins.Store(i, true)
			}
		}()
	}
	wg.Wait()
	n := 0
	wins.Range(func(any, any) bool { n++; return true })
	assert.Equal(t, 1, n)
}

func TestPQSizes(t *testing.T) {
	type sizes struct{ npk, nsk, nenc, sigPub, sig int }
	want := map[SuiteDefinition]sizes{
		MLS_128_MLKEM512_AES128GCM_SHA256_Ed25519:              {800, 64, 768, 32, 64},
		MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519:              {1184, 64, 1088, 32, 64},
		MLS_192_MLKEM1024_AES256GCM_SHA384_P384:                {1568, 64, 1568, 97, -1},
		MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519:        {1216, 32, 1120, 32, 64},
		MLS_128_MLKEM768P256_AES128GCM_SHA256_P256:             {1249, 32, 1153, 65, -1},
		MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384:            {1665, 32, 1665, 97, -1},
		MLS_128_MLKEM768X25519_CHACHA20POLY1305_SHA384_MLDSA44: {1216, 32, 1120, 1312, 2420},
		MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65:              {1184, 64, 1088, 1952, 3309},
		MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87:             {1568, 64, 1568, 2592, 4627},
	}
	for def, w := range want {
		cs := suiteOf(t, def)
		k, err := cs.GenerateKeyPair()
		require.NoError(t, err)
		enc, _, err := cs.Seal(k.PublicKey(), nil, nil, nil)
		require.NoError(t, err)
		s, err := cs.GenerateSignatureKey()
		require.NoError(t, err)
		sig, err := cs.Sign(s, []byte("m"))
		require.NoError(t, err)
		got := sizes{len(k.PublicKey()), len(k.Bytes()), len(enc), len(s.PublicKey()), len(sig)}
		if w.sig < 0 { // DER-encoded ECDSA signatures vary in length
			got.sig = -1
		}
		assert.Equal(t, w, got, def.Name)
	}
}

// suiteOf returns the code point the tests registered def under.
func suiteOf(t testing.TB, def SuiteDefinition) CipherSuite {
	t.Helper()
	for _, cs := range pqSuites() {
		if d, _ := cs.Definition(); d == def {
			return cs
		}
	}
	t.Fatalf("%s is not registered", def.Name)
	return 0
}

// TestMLDSACrossCheck checks SignWithLabel for ML-DSA against circl's
// FIPS 204 implementation used directly: pure ML-DSA over SignContent with
// an empty context, in both directions.
func TestMLDSACrossCheck(t *testing.T) {
	for _, def := range []SuiteDefinition{MLS_128_MLKEM768X25519_CHACHA20POLY1305_SHA384_MLDSA44,
		MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65, MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87} {
		t.Run(def.Name, func(t *testing.T) {
			cs := suiteOf(t, def)
			seed := bytes.Repeat([]byte{7}, 32)
			k, err := cs.NewSignaturePrivateKey(seed)
			require.NoError(t, err)
			content := []byte("content")
			tbs, err := labelPair(mlsLabelPrefix, "Label", content)
			require.NoError(t, err)
			ours, err := cs.SignWithLabel(k, "Label", content)
			require.NoError(t, err)
			ours2, err := cs.SignWithLabel(k, "Label", content)
			require.NoError(t, err)
			assert.NotEqual(t, ours, ours2, "signing is hedged")

			var theirs []byte
			var ok, okCtx bool
			switch def.Signature {
			case MLDSA44:
				var s [32]byte
				copy(s[:], seed)
				pk, sk := mldsa44.NewKeyFromSeed(&s)
				require.Equal(t, pk.Bytes(), k.PublicKey())
				theirs = make([]byte, mldsa44.SignatureSize)
				require.NoError(t, mldsa44.SignTo(sk, tbs, nil, false, theirs))
				ok = mldsa44.Verify(pk, tbs, nil, ours)
				okCtx = mldsa44.Verify(pk, tbs, []byte("MLS"), ours)
			case MLDSA65:
				var s [32]byte
				copy(s[:], seed)
				pk, sk := mldsa65.NewKeyFromSeed(&s)
				require.Equal(t, pk.Bytes(), k.PublicKey())
				theirs = make([]byte, mldsa65.SignatureSize)
				require.NoError(t, mldsa65.SignTo(sk, tbs, nil, false, theirs))
				ok = mldsa65.Verify(pk, tbs, nil, ours)
				okCtx = mldsa65.Verify(pk, tbs, []byte("MLS"), ours)
			case MLDSA87:
				var s [32]byte
				copy(s[:], seed)
				pk, sk := mldsa87.NewKeyFromSeed(&s)
				require.Equal(t, pk.Bytes(), k.PublicKey())
				theirs = make([]byte, mldsa87.SignatureSize)
				require.NoError(t, mldsa87.SignTo(sk, tbs, nil, false, theirs))
				ok = mldsa87.Verify(pk, tbs, nil, ours)
				okCtx = mldsa87.Verify(pk, tbs, []byte("MLS"), ours)
			}
			assert.True(t, ok, "circl verifies our signature with an empty context")
			assert.False(t, okCtx, "and not with another context")
			assert.NoError(t, cs.VerifyWithLabel(k.PublicKey(), "Label", content, theirs))
			assert.ErrorIs(t, cs.VerifyWithLabel(k.PublicKey(), "Labe1", content, theirs), ErrInvalidSignature)
			assert.ErrorIs(t, cs.Verify(k.PublicKey(), tbs, append(theirs, 0)), ErrInvalidSignature)
		})
	}
}

// hpkePQVector is one case of the draft-ietf-hpke-pq test vectors.
type hpkePQVector struct {
	Mode         uint16   `json:"mode"`
	KEM          uint16   `json:"kem_id"`
	KDF          uint16   `json:"kdf_id"`
	AEAD         uint16   `json:"aead_id"`
	Info         hexBytes `json:"info"`
	IkmE         hexBytes `json:"ikmE"`
	IkmR         hexBytes `json:"ikmR"`
	SkRm         hexBytes `json:"skRm"`
	PkRm         hexBytes `json:"pkRm"`
	Enc          hexBytes `json:"enc"`
	SharedSecret hexBytes `json:"shared_secret"`
	Key          hexBytes `json:"key"`
	BaseNonce    hexBytes `json:"base_nonce"`
	ExporterSec  hexBytes `json:"exporter_secret"`
	Encryptions  []struct {
		Aad   hexBytes `json:"aad"`
		Ct    hexBytes `json:"ct"`
		Nonce hexBytes `json:"nonce"`
		Pt    hexBytes `json:"pt"`
	} `json:"encryptions"`
	Exports []struct {
		Context hexBytes `json:"exporter_context"`
		L       int      `json:"L"`
		Value   hexBytes `json:"exported_value"`
	} `json:"exports"`
}

// loadHPKEPQVectors reads the test vectors of draft-ietf-hpke-pq. They are
// not copied into this repository: the Go distribution ships them (as
// $GOROOT/src/crypto/hpke/testdata/hpke-pq.json) for crypto/hpke's own
// tests; $HPKE_PQ_VECTORS overrides the path.
func loadHPKEPQVectors(t *testing.T) []hpkePQVector {
	t.Helper()
	path := os.Getenv("HPKE_PQ_VECTORS")
	if path == "" {
		root := os.Getenv("GOROOT")
		if root == "" {
			out, err := exec.Command("go", "env", "GOROOT").Output()
			require.NoError(t, err, "finding GOROOT")
			root = strings.TrimSpace(string(out))
		}
		path = filepath.Join(root, "src", "crypto", "hpke", "testdata", "hpke-pq.json")
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err, "the draft-ietf-hpke-pq vectors ship with Go; set HPKE_PQ_VECTORS to their path")
	var vs []hpkePQVector
	require.NoError(t, json.Unmarshal(b, &vs))
	return vs
}

// TestHPKEPQVectors runs the draft-ietf-hpke-pq vectors for every KEM an
// MLS suite can use, in every case whose KDF is an HKDF (MLS's KDF is HKDF
// with the suite's hash, RFC 9420, Section 5.1; the cases with the SHAKE
// and TurboSHAKE KDFs of draft-ietf-hpke-hpke do not describe an MLS
// suite) and whose KEM is post-quantum (the DHKEM cases are RFC 9180's,
// covered by the MLS crypto-basics vectors).
func TestHPKEPQVectors(t *testing.T) {
	ran := map[KEM]bool{}
	for _, v := range loadHPKEPQVectors(t) {
		k := kemByID(KEM(v.KEM))
		if v.Mode != 0 || v.KDF > 3 || k == nil || v.KEM < 0x0040 {
			continue
		}
		name := fmt.Sprintf("kem=%04x/kdf=%04x/aead=%04x", v.KEM, v.KDF, v.AEAD)
		t.Run(name, func(t *testing.T) {
			def := SuiteDefinition{Name: name, KEM: KEM(v.KEM), KDF: KDF(v.KDF), AEAD: AEAD(v.AEAD), Signature: Ed25519}
			p, err := paramsFromDefinition(def)
			require.NoError(t, err)
			cs := CipherSuite(0xE000 + v.KEM%0x100 + v.AEAD<<8 + v.KDF<<10)
			require.NoError(t, RegisterCipherSuite(cs, def))
			ran[def.KEM] = true

			// DeriveKeyPair and the key encodings.
			priv, err := cs.DeriveKeyPair(v.IkmR)
			require.NoError(t, err)
			assert.Equal(t, []byte(v.SkRm), priv.Bytes(), "DeriveKeyPair(ikmR)")
			assert.Equal(t, []byte(v.PkRm), priv.PublicKey())
			priv, err = cs.NewPrivateKey(v.SkRm)
			require.NoError(t, err)
			assert.Equal(t, []byte(v.PkRm), priv.PublicKey())
			require.NoError(t, cs.ValidatePublicKey(v.PkRm))

			// The first encryption is the single-shot Seal of MLS
			// (sequence number zero); the exports are of the same context.
			e := v.Encryptions[0]
			require.Equal(t, []byte(v.BaseNonce), []byte(e.Nonce))
			pt, err := cs.Open(priv, v.Enc, v.Info, e.Aad, e.Ct)
			require.NoError(t, err)
			assert.Equal(t, []byte(e.Pt), pt)
			for _, x := range v.Exports {
				got, err := cs.OpenExport(priv, v.Enc, v.Info, x.Context, x.L)
				require.NoError(t, err)
				assert.Equal(t, []byte(x.Value), got)
			}
			bad := bytes.Clone([]byte(e.Ct))
			bad[0] ^= 1
			_, err = cs.Open(priv, v.Enc, v.Info, e.Aad, bad)
			assert.ErrorIs(t, err, ErrDecryption)

			// ML-KEM-512 is implemented here: check Encap with the vector's
			// randomness and each step of the key schedule too.
			if m, ok := k.(*mlkem512KEM); ok {
				shared, enc, err := m.encapWithSeed(v.PkRm, v.IkmE)
				require.NoError(t, err)
				assert.Equal(t, []byte(v.Enc), enc)
				assert.Equal(t, []byte(v.SharedSecret), shared)
				got, err := m.decap(v.Enc, priv)
				require.NoError(t, err)
				assert.Equal(t, []byte(v.SharedSecret), got)
				c := p.keySchedule(shared, v.Info, true, true)
				assert.Equal(t, []byte(v.Key), c.key)
				assert.Equal(t, []byte(v.BaseNonce), c.baseNonce)
				assert.Equal(t, []byte(v.ExporterSec), c.exporterSecret)
			}
		})
	}
	for _, id := range []KEM{KEM_MLKEM512, KEM_MLKEM768, KEM_MLKEM1024, KEM_MLKEM768_P256, KEM_MLKEM1024_P384, KEM_MLKEM768_X25519} {
		assert.True(t, ran[id], "no vector for KEM 0x%04x", uint16(id))
	}
}

// TestMLKEM512MatchesDraftDerivation checks the SHAKE256 LabeledDerive of
// this package against crypto/hpke's DeriveKeyPair for ML-KEM-768, which
// uses the same construction with another suite_id.
func TestMLKEM512MatchesDraftDerivation(t *testing.T) {
	ikm, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	seed := shakeLabeledDerive([]byte{'K', 'E', 'M', 0x00, 0x41}, ikm, "DeriveKeyPair", nil, 64)
	k, err := kemMLKEM768.deriveKeyPair(0, ikm)
	require.NoError(t, err)
	assert.Equal(t, seed, k.Bytes())
}

// TestPQKEMRefusals checks malformed keys and ciphertexts of the PQ KEMs.
func TestPQKEMRefusals(t *testing.T) {
	for _, def := range []SuiteDefinition{MLS_128_MLKEM512_AES128GCM_SHA256_Ed25519,
		MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519, MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519,
		MLS_128_MLKEM768P256_AES128GCM_SHA256_P256, MLS_192_MLKEM1024P384_AES256GCM_SHA384_P384} {
		t.Run(def.Name, func(t *testing.T) {
			cs := suiteOf(t, def)
			k, err := cs.GenerateKeyPair()
			require.NoError(t, err)
			pub := k.PublicKey()
			// An ML-KEM encapsulation key with a coefficient >= q fails
			// the modulus check of FIPS 203, Section 7.2.
			bad := bytes.Clone(pub)
			bad[0], bad[1] = 0xff, 0xff
			assert.ErrorIs(t, cs.ValidatePublicKey(bad), ErrInvalidPublicKey)
			_, _, err = cs.Seal(bad, nil, nil, nil)
			assert.ErrorIs(t, err, ErrInvalidPublicKey)
			_, _, err = cs.SealExport(bad, nil, nil, 32)
			assert.ErrorIs(t, err, ErrInvalidPublicKey)
			assert.ErrorIs(t, cs.ValidatePublicKey(append(pub, 0)), ErrInvalidPublicKey)
			_, err = cs.NewPrivateKey(k.Bytes()[1:])
			assert.ErrorIs(t, err, ErrInvalidPrivateKey)

			enc, ct, err := cs.Seal(pub, nil, nil, []byte("m"))
			require.NoError(t, err)
			_, err = cs.Open(k, append(enc, 0), nil, nil, ct)
			assert.ErrorIs(t, err, ErrDecryption)
			_, err = cs.OpenExport(k, enc[:len(enc)-1], nil, nil, 32)
			assert.ErrorIs(t, err, ErrDecryption)
			// A key of another suite with another KEM is refused.
			other, err := MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.GenerateKeyPair()
			require.NoError(t, err)
			_, err = cs.Open(other, enc, nil, nil, ct)
			assert.ErrorIs(t, err, ErrInvalidPrivateKey)
		})
	}
}

// TestXWingCirclCrossCheck checks the X-Wing suite against circl's HPKE
// X-Wing (KEM 0x647a) in both directions: the 32-byte private key encodes
// the same key pair, and each side opens what the other sealed. circl's
// DeriveKeyPair is SHAKE256(ikm) as in draft-connolly-cfrg-xwing-kem, not
// the LabeledDerive of draft-ietf-hpke-pq that this package follows, so
// derived keys differ: peers deriving tree keys the other way cannot
// interoperate.
func TestXWingCirclCrossCheck(t *testing.T) {
	cs := suiteOf(t, MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519)
	suite := circlhpke.NewSuite(circlhpke.KEM_XWING, circlhpke.KDF_HKDF_SHA256, circlhpke.AEAD_AES128GCM)
	scheme := circlhpke.KEM_XWING.Scheme()
	ikm := bytes.Repeat([]byte{3}, 32)
	ours, err := cs.DeriveKeyPair(ikm)
	require.NoError(t, err)
	sk, err := scheme.UnmarshalBinaryPrivateKey(ours.Bytes())
	require.NoError(t, err)
	pk, err := sk.Public().MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, ours.PublicKey(), pk)
	theirPK, _ := scheme.DeriveKeyPair(ikm)
	theirPKBytes, err := theirPK.MarshalBinary()
	require.NoError(t, err)
	assert.NotEqual(t, ours.PublicKey(), theirPKBytes, "DeriveKeyPair follows draft-ietf-hpke-pq, not plain SHAKE256")

	info, aad, msg := []byte("info"), []byte("aad"), []byte("message")
	// circl seals, we open.
	sender, err := suite.NewSender(sk.Public(), info)
	require.NoError(t, err)
	enc, sealer, err := sender.Setup(nil)
	require.NoError(t, err)
	ct, err := sealer.Seal(msg, aad)
	require.NoError(t, err)
	pt, err := cs.Open(ours, enc, info, aad, ct)
	require.NoError(t, err)
	assert.Equal(t, msg, pt)
	// We seal, circl opens.
	enc, ct, err = cs.Seal(ours.PublicKey(), info, aad, msg)
	require.NoError(t, err)
	receiver, err := suite.NewReceiver(sk, info)
	require.NoError(t, err)
	opener, err := receiver.Setup(enc)
	require.NoError(t, err)
	pt, err = opener.Open(ct, aad)
	require.NoError(t, err)
	assert.Equal(t, msg, pt)
}
