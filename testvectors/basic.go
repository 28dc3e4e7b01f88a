package testvectors

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/treemath"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
)

// This file holds the vector types that test primitives: tree-math,
// deserialization, crypto-basics, key-schedule, psk_secret, secret-tree and
// transcript-hashes.

type treeMathVector struct {
	NLeaves uint32    `json:"n_leaves"`
	NNodes  uint32    `json:"n_nodes"`
	Root    uint32    `json:"root"`
	Left    []*uint32 `json:"left"`
	Right   []*uint32 `json:"right"`
	Parent  []*uint32 `json:"parent"`
	Sibling []*uint32 `json:"sibling"`
}

// checkTreeMath checks the array-tree arithmetic of RFC 9420, Appendix C.
func checkTreeMath(c *checker, v *treeMathVector) {
	if v.NLeaves == 0 {
		c.fatalf("n_leaves is 0")
	}
	if w := treemath.NodeWidth(v.NLeaves); w != v.NNodes {
		c.fatalf("NodeWidth(%d) = %d, want %d", v.NLeaves, w, v.NNodes)
	}
	root := treemath.Root(v.NLeaves)
	if uint32(root) != v.Root {
		c.fatalf("Root(%d) = %d, want %d", v.NLeaves, root, v.Root)
	}
	for _, list := range [][]*uint32{v.Left, v.Right, v.Parent, v.Sibling} {
		if uint32(len(list)) != v.NNodes {
			c.fatalf("vector lists %d nodes, want %d", len(list), v.NNodes)
		}
	}
	check := func(name string, x, got treemath.NodeIndex, ok bool, want *uint32) {
		switch {
		case want == nil && ok:
			c.errorf("%s(%d) = %d, want none", name, x, got)
		case want != nil && !ok:
			c.errorf("%s(%d) = none, want %d", name, x, *want)
		case want != nil && uint32(got) != *want:
			c.errorf("%s(%d) = %d, want %d", name, x, got, *want)
		}
	}
	for i := range v.NNodes {
		x := treemath.NodeIndex(i)
		leaf, isRoot := x.IsLeaf(), x == root
		var l, r, p, s treemath.NodeIndex
		if !leaf {
			l, r = treemath.Left(x), treemath.Right(x, v.NLeaves)
		}
		if !isRoot {
			p, s = treemath.Parent(x, v.NLeaves), treemath.Sibling(x, v.NLeaves)
		}
		check("Left", x, l, !leaf, v.Left[i])
		check("Right", x, r, !leaf, v.Right[i])
		check("Parent", x, p, !isRoot, v.Parent[i])
		check("Sibling", x, s, !isRoot, v.Sibling[i])
	}
}

func genTreeMath(g *generator) ([]treeMathVector, error) {
	var out []treeMathVector
	opt := func(x treemath.NodeIndex, ok bool) *uint32 {
		if !ok {
			return nil
		}
		u := uint32(x)
		return &u
	}
	for _, n := range []uint32{1, 2, 3, 4, 5, 7, 8, 11, 16, 23, 32} {
		v := treeMathVector{NLeaves: n, NNodes: treemath.NodeWidth(n), Root: uint32(treemath.Root(n))}
		for i := range v.NNodes {
			x := treemath.NodeIndex(i)
			leaf, isRoot := x.IsLeaf(), uint32(x) == v.Root
			if leaf {
				v.Left, v.Right = append(v.Left, nil), append(v.Right, nil)
			} else {
				v.Left = append(v.Left, opt(treemath.Left(x), true))
				v.Right = append(v.Right, opt(treemath.Right(x, n), true))
			}
			if isRoot {
				v.Parent, v.Sibling = append(v.Parent, nil), append(v.Sibling, nil)
			} else {
				v.Parent = append(v.Parent, opt(treemath.Parent(x, n), true))
				v.Sibling = append(v.Sibling, opt(treemath.Sibling(x, n), true))
			}
		}
		out = append(out, v)
	}
	return out, nil
}

type deserializationVector struct {
	VLBytesHeader hexBytes `json:"vlbytes_header"`
	Length        uint32   `json:"length"`
}

// checkDeserialization checks the variable-length integers of RFC 9420,
// Section 2.1.2.
func checkDeserialization(c *checker, v *deserializationVector) {
	got, n, err := wire.DecodeVarint(v.VLBytesHeader)
	c.must(fmt.Sprintf("DecodeVarint(%x)", []byte(v.VLBytesHeader)), err)
	if got != v.Length || n != len(v.VLBytesHeader) {
		c.fatalf("DecodeVarint(%x) = %d, %d bytes; want %d, %d bytes", []byte(v.VLBytesHeader), got, n, v.Length, len(v.VLBytesHeader))
	}
	c.equal("AppendVarint", wire.AppendVarint(nil, v.Length), v.VLBytesHeader)
	if v.Length < 1<<16 {
		full := append(bytes.Clone(v.VLBytesHeader), make([]byte, v.Length)...)
		var out []byte
		read := func(s *cryptobyte.String) bool { return wire.ReadVarintBytes(s, &out) }
		if err := wire.Parse(full, read); err != nil || len(out) != int(v.Length) {
			c.errorf("ReadVarintBytes: len %d, err %v", len(out), err)
		}
		if err := wire.Parse(full[:len(full)-1], read); v.Length > 0 && !errors.Is(err, wire.ErrMalformed) {
			c.errorf("truncated vector: err = %v, want ErrMalformed", err)
		}
	}
}

func genDeserialization(g *generator) ([]deserializationVector, error) {
	var out []deserializationVector
	for _, n := range []uint32{0, 1, 37, 63, 64, 255, 1000, 16383, 16384, 65535, 65536, 1 << 20, wire.MaxVarint} {
		out = append(out, deserializationVector{VLBytesHeader: wire.AppendVarint(nil, n), Length: n})
	}
	return out, nil
}

// suite returns the cipher suite id, stopping the case if it is not
// supported.
func (c *checker) suite(id uint16) hpke.CipherSuite {
	cs := hpke.CipherSuite(id)
	if !cs.Supported() {
		c.fatalf("cipher suite %d is not supported", id)
	}
	return cs
}

type cryptoBasicsVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	RefHash     struct {
		Label string   `json:"label"`
		Value hexBytes `json:"value"`
		Out   hexBytes `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  hexBytes `json:"secret"`
		Label   string   `json:"label"`
		Context hexBytes `json:"context"`
		Length  int      `json:"length"`
		Out     hexBytes `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret hexBytes `json:"secret"`
		Label  string   `json:"label"`
		Out    hexBytes `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     hexBytes `json:"secret"`
		Label      string   `json:"label"`
		Generation uint32   `json:"generation"`
		Length     int      `json:"length"`
		Out        hexBytes `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      hexBytes `json:"priv"`
		Pub       hexBytes `json:"pub"`
		Content   hexBytes `json:"content"`
		Label     string   `json:"label"`
		Signature hexBytes `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       hexBytes `json:"priv"`
		Pub        hexBytes `json:"pub"`
		Label      string   `json:"label"`
		Context    hexBytes `json:"context"`
		Plaintext  hexBytes `json:"plaintext"`
		KEMOutput  hexBytes `json:"kem_output"`
		Ciphertext hexBytes `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

// checkCryptoBasics checks the labeled primitives of RFC 9420, Section 5.
func checkCryptoBasics(c *checker, v *cryptoBasicsVector) {
	cs := c.suite(v.CipherSuite)
	c.sub("ref_hash", func() {
		r := &v.RefHash
		c.equal("RefHash", cs.RefHash(r.Label, r.Value), r.Out)
	})
	c.sub("expand_with_label", func() {
		e := &v.ExpandWithLabel
		c.equal("ExpandWithLabel", cs.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length), e.Out)
	})
	c.sub("derive_secret", func() {
		d := &v.DeriveSecret
		c.equal("DeriveSecret", cs.DeriveSecret(d.Secret, d.Label), d.Out)
	})
	c.sub("derive_tree_secret", func() {
		d := &v.DeriveTreeSecret
		c.equal("DeriveTreeSecret", cs.DeriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length), d.Out)
	})
	c.sub("sign_with_label", func() {
		s := &v.SignWithLabel
		c.must("ValidateSignaturePublicKey", cs.ValidateSignaturePublicKey(s.Pub))
		if err := cs.VerifyWithLabel(s.Pub, s.Label, s.Content, s.Signature); err != nil {
			c.errorf("VerifyWithLabel(given signature): %v", err)
		}
		k, err := cs.NewSignaturePrivateKey(s.Priv)
		c.must("NewSignaturePrivateKey", err)
		c.equal("PublicKey", k.PublicKey(), s.Pub)
		sig, err := cs.SignWithLabel(k, s.Label, s.Content)
		c.must("SignWithLabel", err)
		if err := cs.VerifyWithLabel(s.Pub, s.Label, s.Content, sig); err != nil {
			c.errorf("VerifyWithLabel(fresh signature): %v", err)
		}
		if err := cs.VerifyWithLabel(s.Pub, s.Label+"x", s.Content, s.Signature); !errors.Is(err, hpke.ErrInvalidSignature) {
			c.errorf("VerifyWithLabel(wrong label) = %v, want ErrInvalidSignature", err)
		}
	})
	c.sub("encrypt_with_label", func() {
		e := &v.EncryptWithLabel
		c.must("ValidatePublicKey", cs.ValidatePublicKey(e.Pub))
		k, err := cs.NewPrivateKey(e.Priv)
		c.must("NewPrivateKey", err)
		c.equal("PublicKey", k.PublicKey(), e.Pub)
		pt, err := cs.DecryptWithLabel(k, e.Label, e.Context, e.KEMOutput, e.Ciphertext)
		c.must("DecryptWithLabel(given ciphertext)", err)
		c.equal("plaintext", pt, e.Plaintext)
		kemOut, ct, err := cs.EncryptWithLabel(e.Pub, e.Label, e.Context, e.Plaintext)
		c.must("EncryptWithLabel", err)
		pt, err = cs.DecryptWithLabel(k, e.Label, e.Context, kemOut, ct)
		c.must("DecryptWithLabel(fresh ciphertext)", err)
		c.equal("fresh plaintext", pt, e.Plaintext)
		if _, err := cs.DecryptWithLabel(k, e.Label, append(bytes.Clone(e.Context), 0), e.KEMOutput, e.Ciphertext); !errors.Is(err, hpke.ErrDecryption) {
			c.errorf("DecryptWithLabel(wrong context) = %v, want ErrDecryption", err)
		}
	})
}

func genCryptoBasics(g *generator) ([]cryptoBasicsVector, error) {
	var out []cryptoBasicsVector
	for _, cs := range rfcSuites {
		nh := cs.HashSize()
		var v cryptoBasicsVector
		v.CipherSuite = uint16(cs)
		v.RefHash.Label, v.RefHash.Value = "RefHash", g.bytes(nh)
		v.RefHash.Out = cs.RefHash(v.RefHash.Label, v.RefHash.Value)
		e := &v.ExpandWithLabel
		e.Secret, e.Label, e.Context, e.Length = g.bytes(nh), "ExpandWithLabel", g.bytes(nh), 16+g.intn(nh)
		e.Out = cs.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length)
		d := &v.DeriveSecret
		d.Secret, d.Label = g.bytes(nh), "DeriveSecret"
		d.Out = cs.DeriveSecret(d.Secret, d.Label)
		t := &v.DeriveTreeSecret
		t.Secret, t.Label, t.Generation, t.Length = g.bytes(nh), "DeriveTreeSecret", uint32(g.intn(1<<16)), nh
		t.Out = cs.DeriveTreeSecret(t.Secret, t.Label, t.Generation, t.Length)
		s := &v.SignWithLabel
		sk, err := cs.GenerateSignatureKey()
		if err != nil {
			return nil, err
		}
		s.Priv, s.Pub, s.Content, s.Label = sk.Bytes(), sk.PublicKey(), g.bytes(nh), "SignWithLabel"
		if s.Signature, err = cs.SignWithLabel(sk, s.Label, s.Content); err != nil {
			return nil, err
		}
		w := &v.EncryptWithLabel
		k, err := cs.DeriveKeyPair(g.bytes(nh))
		if err != nil {
			return nil, err
		}
		w.Priv, w.Pub, w.Label, w.Context, w.Plaintext = k.Bytes(), k.PublicKey(), "EncryptWithLabel", g.bytes(nh), g.bytes(nh)
		if w.KEMOutput, w.Ciphertext, err = cs.EncryptWithLabel(w.Pub, w.Label, w.Context, w.Plaintext); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

type keyScheduleEpoch struct {
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
		// Label is the label string itself: although the official
		// files hold hex there, implementations do not decode it.
		Label   string   `json:"label"`
		Context hexBytes `json:"context"`
		Length  int      `json:"length"`
		Secret  hexBytes `json:"secret"`
	} `json:"exporter"`
}

type keyScheduleVector struct {
	CipherSuite       uint16             `json:"cipher_suite"`
	GroupID           hexBytes           `json:"group_id"`
	InitialInitSecret hexBytes           `json:"initial_init_secret"`
	Epochs            []keyScheduleEpoch `json:"epochs"`
}

// deriveEpoch computes every secret of one epoch of the key schedule
// (RFC 9420, Section 8) from e's inputs, filling e's outputs.
func deriveEpoch(cs hpke.CipherSuite, groupID []byte, n int, init *keyschedule.InitSecret, e *keyScheduleEpoch) (*keyschedule.InitSecret, error) {
	gc := &keyschedule.GroupContext{
		Version: keyschedule.MLS10, CipherSuite: cs, GroupID: groupID, Epoch: uint64(n),
		TreeHash: e.TreeHash, ConfirmedTranscriptHash: e.ConfirmedTranscriptHash,
	}
	gcBytes := gc.Bytes()
	e.GroupContext = gcBytes
	joiner := init.JoinerSecret(e.CommitSecret, gcBytes)
	e.JoinerSecret = joiner.Bytes()
	e.WelcomeSecret = joiner.WelcomeSecret(e.PSKSecret).Bytes()
	s := joiner.EpochSecret(e.PSKSecret, gcBytes).Derive()
	e.SenderDataSecret = s.SenderDataSecret()
	e.EncryptionSecret = s.EncryptionSecret()
	e.ExporterSecret = s.ExporterSecret()
	e.EpochAuthenticator = s.EpochAuthenticator()
	e.ExternalSecret = s.ExternalSecret()
	e.ConfirmationKey = s.ConfirmationKey()
	e.MembershipKey = s.MembershipKey()
	e.ResumptionPSK = s.ResumptionPSK()
	next := s.NextInit()
	e.InitSecret = slices.Clone(next.Bytes())
	priv, err := s.ExternalKeyPair()
	if err != nil {
		return nil, fmt.Errorf("external key pair: %w", err)
	}
	e.ExternalPub = priv.PublicKey()
	if e.Exporter.Secret, err = s.Export(e.Exporter.Label, e.Exporter.Context, e.Exporter.Length); err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	return next, nil
}

// checkKeySchedule checks the epoch key schedule of RFC 9420, Section 8.
func checkKeySchedule(c *checker, v *keyScheduleVector) {
	cs := c.suite(v.CipherSuite)
	if len(v.Epochs) == 0 {
		c.fatalf("no epochs")
	}
	init, err := keyschedule.NewInitSecret(cs, v.InitialInitSecret)
	c.must("initial_init_secret", err)
	for n := range v.Epochs {
		want := &v.Epochs[n]
		ok := c.sub(fmt.Sprintf("epoch-%d", n), func() {
			got := *want
			_, err := deriveEpoch(cs, v.GroupID, n, init, &got)
			c.must("deriving", err)
			for _, f := range []struct {
				name      string
				got, want []byte
			}{
				{"group_context", got.GroupContext, want.GroupContext},
				{"joiner_secret", got.JoinerSecret, want.JoinerSecret},
				{"welcome_secret", got.WelcomeSecret, want.WelcomeSecret},
				{"init_secret", got.InitSecret, want.InitSecret},
				{"sender_data_secret", got.SenderDataSecret, want.SenderDataSecret},
				{"encryption_secret", got.EncryptionSecret, want.EncryptionSecret},
				{"exporter_secret", got.ExporterSecret, want.ExporterSecret},
				{"epoch_authenticator", got.EpochAuthenticator, want.EpochAuthenticator},
				{"external_secret", got.ExternalSecret, want.ExternalSecret},
				{"confirmation_key", got.ConfirmationKey, want.ConfirmationKey},
				{"membership_key", got.MembershipKey, want.MembershipKey},
				{"resumption_psk", got.ResumptionPSK, want.ResumptionPSK},
				{"external_pub", got.ExternalPub, want.ExternalPub},
				{"exporter.secret", got.Exporter.Secret, want.Exporter.Secret},
			} {
				c.equal(f.name, f.got, f.want)
			}
			parsed, err := keyschedule.ParseGroupContext(want.GroupContext)
			c.must("ParseGroupContext", err)
			c.equal("re-encoded group_context", parsed.Bytes(), want.GroupContext)
			// A new member starting from the joiner secret gets the same
			// epoch.
			joined, err := keyschedule.NewJoinerSecret(cs, want.JoinerSecret)
			c.must("NewJoinerSecret", err)
			c.equal("joined epoch_authenticator", joined.EpochSecret(want.PSKSecret, want.GroupContext).Derive().EpochAuthenticator(), want.EpochAuthenticator)
		})
		if !ok {
			return // later epochs depend on this one
		}
		init, err = keyschedule.NewInitSecret(cs, want.InitSecret)
		c.must("init_secret", err)
	}
}

func genKeySchedule(g *generator) ([]keyScheduleVector, error) {
	var out []keyScheduleVector
	for _, cs := range rfcSuites {
		nh := cs.HashSize()
		v := keyScheduleVector{CipherSuite: uint16(cs), GroupID: g.bytes(16), InitialInitSecret: g.bytes(nh)}
		init, err := keyschedule.NewInitSecret(cs, v.InitialInitSecret)
		if err != nil {
			return nil, err
		}
		for n := range 5 {
			e := keyScheduleEpoch{
				TreeHash: g.bytes(nh), CommitSecret: g.bytes(nh), PSKSecret: g.bytes(nh),
				ConfirmedTranscriptHash: g.bytes(nh),
			}
			e.Exporter.Label = fmt.Sprintf("exporter label %d", n)
			e.Exporter.Context, e.Exporter.Length = g.bytes(nh), 32
			if init, err = deriveEpoch(cs, v.GroupID, n, init, &e); err != nil {
				return nil, err
			}
			v.Epochs = append(v.Epochs, e)
		}
		out = append(out, v)
	}
	return out, nil
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

func (v *pskSecretVector) psks() []keyschedule.PSK {
	psks := make([]keyschedule.PSK, len(v.PSKs))
	for i, p := range v.PSKs {
		psks[i] = keyschedule.PSK{
			ID:     keyschedule.PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: p.PSKID, PSKNonce: p.PSKNonce},
			Secret: p.PSK,
		}
	}
	return psks
}

// checkPSKSecret checks the PSK secret of RFC 9420, Section 8.4.
func checkPSKSecret(c *checker, v *pskSecretVector) {
	cs := c.suite(v.CipherSuite)
	got, err := keyschedule.PSKSecret(cs, v.psks())
	c.must("PSKSecret", err)
	c.equal("psk_secret", got, v.PSKSecret)
}

func genPSKSecret(g *generator) ([]pskSecretVector, error) {
	var out []pskSecretVector
	for _, cs := range rfcSuites {
		for _, n := range []int{0, 1, 3} {
			v := pskSecretVector{CipherSuite: uint16(cs)}
			v.PSKs = make([]struct {
				PSKID    hexBytes `json:"psk_id"`
				PSK      hexBytes `json:"psk"`
				PSKNonce hexBytes `json:"psk_nonce"`
			}, n)
			for i := range v.PSKs {
				v.PSKs[i].PSKID, v.PSKs[i].PSK, v.PSKs[i].PSKNonce = g.bytes(8), g.bytes(cs.HashSize()), g.bytes(cs.HashSize())
			}
			var err error
			if v.PSKSecret, err = keyschedule.PSKSecret(cs, v.psks()); err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

type secretTreeGeneration struct {
	Generation       uint32   `json:"generation"`
	HandshakeKey     hexBytes `json:"handshake_key"`
	HandshakeNonce   hexBytes `json:"handshake_nonce"`
	ApplicationKey   hexBytes `json:"application_key"`
	ApplicationNonce hexBytes `json:"application_nonce"`
}

type secretTreeVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	SenderData  struct {
		SenderDataSecret hexBytes `json:"sender_data_secret"`
		Ciphertext       hexBytes `json:"ciphertext"`
		Key              hexBytes `json:"key"`
		Nonce            hexBytes `json:"nonce"`
	} `json:"sender_data"`
	EncryptionSecret hexBytes                 `json:"encryption_secret"`
	Leaves           [][]secretTreeGeneration `json:"leaves"`
}

// checkSecretTree checks the sender data keys and the secret tree of
// RFC 9420, Sections 6.3.2 and 9.
func checkSecretTree(c *checker, v *secretTreeVector) {
	cs := c.suite(v.CipherSuite)
	c.sub("sender-data", func() {
		key, nonce := keyschedule.SenderDataKey(cs, v.SenderData.SenderDataSecret, v.SenderData.Ciphertext)
		c.equal("key", key, v.SenderData.Key)
		c.equal("nonce", nonce, v.SenderData.Nonce)
	})
	tree, err := keyschedule.NewSecretTree(cs, v.EncryptionSecret, uint32(len(v.Leaves)), nil)
	c.must("NewSecretTree", err)
	for leaf, gens := range v.Leaves {
		c.sub(fmt.Sprintf("leaf-%d", leaf), func() {
			for _, g := range gens {
				hs, err := tree.Key(uint32(leaf), keyschedule.Handshake, g.Generation)
				c.must(fmt.Sprintf("handshake generation %d", g.Generation), err)
				c.equal(fmt.Sprintf("handshake_key[%d]", g.Generation), hs.Key, g.HandshakeKey)
				c.equal(fmt.Sprintf("handshake_nonce[%d]", g.Generation), hs.Nonce, g.HandshakeNonce)
				app, err := tree.Key(uint32(leaf), keyschedule.Application, g.Generation)
				c.must(fmt.Sprintf("application generation %d", g.Generation), err)
				c.equal(fmt.Sprintf("application_key[%d]", g.Generation), app.Key, g.ApplicationKey)
				c.equal(fmt.Sprintf("application_nonce[%d]", g.Generation), app.Nonce, g.ApplicationNonce)
			}
		})
	}
}

func genSecretTree(g *generator) ([]secretTreeVector, error) {
	var out []secretTreeVector
	for _, cs := range rfcSuites {
		for _, n := range []uint32{1, 8, 11} {
			nh := cs.HashSize()
			v := secretTreeVector{CipherSuite: uint16(cs), EncryptionSecret: g.bytes(nh)}
			sd := &v.SenderData
			sd.SenderDataSecret, sd.Ciphertext = g.bytes(nh), g.bytes(nh+16)
			sd.Key, sd.Nonce = keyschedule.SenderDataKey(cs, sd.SenderDataSecret, sd.Ciphertext)
			tree, err := keyschedule.NewSecretTree(cs, v.EncryptionSecret, n, nil)
			if err != nil {
				return nil, err
			}
			for leaf := range n {
				var gens []secretTreeGeneration
				for _, gen := range []uint32{0, 1, 15} {
					hs, err := tree.Key(leaf, keyschedule.Handshake, gen)
					if err != nil {
						return nil, err
					}
					app, err := tree.Key(leaf, keyschedule.Application, gen)
					if err != nil {
						return nil, err
					}
					gens = append(gens, secretTreeGeneration{gen, hs.Key, hs.Nonce, app.Key, app.Nonce})
				}
				v.Leaves = append(v.Leaves, gens)
			}
			out = append(out, v)
		}
	}
	return out, nil
}

type transcriptVector struct {
	CipherSuite                  uint16   `json:"cipher_suite"`
	ConfirmationKey              hexBytes `json:"confirmation_key"`
	AuthenticatedContent         hexBytes `json:"authenticated_content"`
	InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
	ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
	InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
}

// splitConfirmationTag cuts the AuthenticatedContent of a commit into the
// ConfirmedTranscriptHashInput and the confirmation tag (RFC 9420,
// Section 8.2): the content ends with a MAC of KDF.Nh bytes.
func splitConfirmationTag(cs hpke.CipherSuite, ac []byte) (input, tag []byte, ok bool) {
	nh := cs.HashSize()
	suffix := wire.AppendVarint(nil, uint32(nh))
	cut := len(ac) - len(suffix) - nh
	if cut < 0 || !bytes.Equal(ac[cut:cut+len(suffix)], suffix) {
		return nil, nil, false
	}
	return ac[:cut], ac[cut+len(suffix):], true
}

// checkTranscriptHashes checks the transcript hashes and the confirmation
// tag of RFC 9420, Section 8.2.
func checkTranscriptHashes(c *checker, v *transcriptVector) {
	cs := c.suite(v.CipherSuite)
	input, tag, ok := splitConfirmationTag(cs, v.AuthenticatedContent)
	if !ok {
		c.fatalf("authenticated_content does not end with a %d-byte confirmation tag", cs.HashSize())
	}
	confirmed := keyschedule.ConfirmedTranscriptHash(cs, v.InterimTranscriptHashBefore, input)
	c.equal("confirmed_transcript_hash_after", confirmed, v.ConfirmedTranscriptHashAfter)
	if !keyschedule.VerifyConfirmationTag(cs, v.ConfirmationKey, confirmed, tag) {
		c.errorf("confirmation tag does not verify")
	}
	c.equal("interim_transcript_hash_after", keyschedule.InterimTranscriptHash(cs, confirmed, tag), v.InterimTranscriptHashAfter)
}
