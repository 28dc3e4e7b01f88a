package testvectors

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/internal/vectorhook"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/keyschedule"
	"github.com/microchat/e2ee/mls"
)

// This file holds the message vector types: messages, welcome,
// message-protection and transcript-hashes' generator.

type messagesVector struct {
	MLSWelcome                     hexBytes `json:"mls_welcome"`
	MLSGroupInfo                   hexBytes `json:"mls_group_info"`
	MLSKeyPackage                  hexBytes `json:"mls_key_package"`
	RatchetTree                    hexBytes `json:"ratchet_tree"`
	GroupSecrets                   hexBytes `json:"group_secrets"`
	AddProposal                    hexBytes `json:"add_proposal"`
	UpdateProposal                 hexBytes `json:"update_proposal"`
	RemoveProposal                 hexBytes `json:"remove_proposal"`
	PreSharedKeyProposal           hexBytes `json:"pre_shared_key_proposal"`
	ReInitProposal                 hexBytes `json:"re_init_proposal"`
	ExternalInitProposal           hexBytes `json:"external_init_proposal"`
	GroupContextExtensionsProposal hexBytes `json:"group_context_extensions_proposal"`
	Commit                         hexBytes `json:"commit"`
	PublicMessageApplication       hexBytes `json:"public_message_application"`
	PublicMessageProposal          hexBytes `json:"public_message_proposal"`
	PublicMessageCommit            hexBytes `json:"public_message_commit"`
	PrivateMessage                 hexBytes `json:"private_message"`
}

// groupSecrets is GroupSecrets (RFC 9420, Section 12.4.3.1).
type groupSecrets struct {
	joinerSecret []byte
	pathSecret   []byte // nil if absent
	psks         []keyschedule.PreSharedKeyID
}

func parseGroupSecrets(data []byte) (*groupSecrets, error) {
	gs := new(groupSecrets)
	err := wire.Parse(data, func(s *cryptobyte.String) bool {
		var present bool
		if !wire.ReadVarintBytes(s, &gs.joinerSecret) || !wire.ReadOptional(s, &present) {
			return false
		}
		if present && !wire.ReadVarintBytes(s, &gs.pathSecret) {
			return false
		}
		return wire.ReadVector(s, func(s *cryptobyte.String) bool {
			var id keyschedule.PreSharedKeyID
			if !id.Unmarshal(s) {
				return false
			}
			gs.psks = append(gs.psks, id)
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	return gs, nil
}

func (gs *groupSecrets) bytes() ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintBytes(b, gs.joinerSecret)
		wire.AddOptional(b, gs.pathSecret != nil, func(b *cryptobyte.Builder) { wire.AddVarintBytes(b, gs.pathSecret) })
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for i := range gs.psks {
				gs.psks[i].Marshal(b)
			}
		})
	})
}

// checkMessages checks that every message structure of RFC 9420 in the
// vector decodes and re-encodes to the same bytes.
func checkMessages(c *checker, v *messagesVector) {
	var suite mls.CipherSuite
	for _, tc := range []struct {
		name string
		data []byte
		wf   mls.WireFormat
	}{
		{"mls_welcome", v.MLSWelcome, mls.WireFormatWelcome},
		{"mls_group_info", v.MLSGroupInfo, mls.WireFormatGroupInfo},
		{"mls_key_package", v.MLSKeyPackage, mls.WireFormatKeyPackage},
		{"public_message_application", v.PublicMessageApplication, mls.WireFormatPublicMessage},
		{"public_message_proposal", v.PublicMessageProposal, mls.WireFormatPublicMessage},
		{"public_message_commit", v.PublicMessageCommit, mls.WireFormatPublicMessage},
		{"private_message", v.PrivateMessage, mls.WireFormatPrivateMessage},
	} {
		m, err := mls.ParseMessage(tc.data)
		if err != nil {
			c.errorf("%s: %v", tc.name, err)
			continue
		}
		if m.WireFormat != tc.wf {
			c.errorf("%s: wire format %d, want %d", tc.name, m.WireFormat, tc.wf)
		}
		if m.KeyPackage != nil {
			suite = m.KeyPackage.CipherSuite
		}
		if out, err := m.Bytes(); err != nil || !bytes.Equal(out, tc.data) {
			c.errorf("%s: re-encoding differs (err %v)", tc.name, err)
		}
		if _, err := mls.ParseMessage(append(bytes.Clone(tc.data), 0)); err == nil {
			c.errorf("%s: trailing byte accepted", tc.name)
		}
	}

	if gs, err := parseGroupSecrets(v.GroupSecrets); err != nil {
		c.errorf("group_secrets: %v", err)
	} else if out, err := gs.bytes(); err != nil || !bytes.Equal(out, v.GroupSecrets) {
		c.errorf("group_secrets: re-encoding differs (err %v)", err)
	}

	// The proposal vectors hold the proposal body without its type; wrap
	// them as a Proposal of the right type.
	for _, tc := range []struct {
		name string
		typ  mls.ProposalType
		body []byte
	}{
		{"add_proposal", mls.ProposalTypeAdd, v.AddProposal},
		{"update_proposal", mls.ProposalTypeUpdate, v.UpdateProposal},
		{"remove_proposal", mls.ProposalTypeRemove, v.RemoveProposal},
		{"pre_shared_key_proposal", mls.ProposalTypePreSharedKey, v.PreSharedKeyProposal},
		{"re_init_proposal", mls.ProposalTypeReInit, v.ReInitProposal},
		{"external_init_proposal", mls.ProposalTypeExternalInit, v.ExternalInitProposal},
		{"group_context_extensions_proposal", mls.ProposalTypeGroupContextExtensions, v.GroupContextExtensionsProposal},
	} {
		data := append([]byte{byte(tc.typ >> 8), byte(tc.typ)}, tc.body...)
		p, err := mls.ParseProposal(data)
		if err != nil {
			c.errorf("%s: %v", tc.name, err)
			continue
		}
		if out, err := p.Bytes(); err != nil || !bytes.Equal(out, data) {
			c.errorf("%s: re-encoding differs (err %v)", tc.name, err)
		}
	}

	if cm, err := mls.ParseCommit(v.Commit); err != nil {
		c.errorf("commit: %v", err)
	} else if out, err := cm.Bytes(); err != nil || !bytes.Equal(out, v.Commit) {
		c.errorf("commit: re-encoding differs (err %v)", err)
	}

	if suite == 0 {
		suite = mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	}
	if tree, err := c.tryParseTree(suite, v.RatchetTree); err != nil {
		c.errorf("ratchet_tree: %v", err)
	} else if !bytes.Equal(tree, v.RatchetTree) {
		c.errorf("ratchet_tree: re-encoding differs")
	}
}

func (c *checker) tryParseTree(cs mls.CipherSuite, data []byte) ([]byte, error) {
	ok := true
	var out []byte
	ok = c.sub("ratchet_tree", func() { out = c.parseTree(cs, data).Bytes() })
	if !ok {
		return nil, errors.New("does not parse")
	}
	return out, nil
}

// body drops the two-byte type of a serialized Proposal.
func body(p *mls.Proposal) ([]byte, error) {
	b, err := p.Bytes()
	if err != nil {
		return nil, err
	}
	return b[2:], nil
}

func messageBytes(m *mls.MLSMessage) []byte {
	b, err := m.Bytes()
	if err != nil {
		panic(err) // messages made by the library always encode
	}
	return b
}

func genMessages(g *generator) ([]messagesVector, error) {
	var out []messagesVector
	for _, cs := range rfcSuites {
		s, err := newSim(g, cs, 3)
		if err != nil {
			return nil, err
		}
		kp, err := s.newKeyPackage()
		if err != nil {
			return nil, err
		}
		nh := cs.HashSize()
		v := messagesVector{MLSKeyPackage: messageBytes(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp.KeyPackage})}
		upd, err := s.members[1].ProposeUpdate()
		if err != nil {
			return nil, err
		}
		v.PublicMessageProposal = messageBytes(upd)
		proposals := []struct {
			out *hexBytes
			p   *mls.Proposal
		}{
			{&v.AddProposal, &mls.Proposal{Type: mls.ProposalTypeAdd, Add: &mls.AddProposal{KeyPackage: *kp.KeyPackage}}},
			{&v.UpdateProposal, upd.PublicMessage.Content.Proposal},
			{&v.RemoveProposal, &mls.Proposal{Type: mls.ProposalTypeRemove, Remove: &mls.RemoveProposal{Removed: 2}}},
			{&v.PreSharedKeyProposal, &mls.Proposal{Type: mls.ProposalTypePreSharedKey, PreSharedKey: &mls.PreSharedKeyProposal{
				PSK: mls.PreSharedKeyID{PSKType: keyschedule.PSKTypeExternal, PSKID: g.bytes(8), PSKNonce: g.bytes(nh)}}}},
			{&v.ReInitProposal, &mls.Proposal{Type: mls.ProposalTypeReInit, ReInit: &mls.ReInitProposal{
				GroupID: g.bytes(16), Version: mls.MLS10, CipherSuite: cs}}},
			{&v.ExternalInitProposal, &mls.Proposal{Type: mls.ProposalTypeExternalInit, ExternalInit: &mls.ExternalInitProposal{KEMOutput: g.bytes(32)}}},
			{&v.GroupContextExtensionsProposal, &mls.Proposal{Type: mls.ProposalTypeGroupContextExtensions, GroupContextExtensions: &mls.GroupContextExtensionsProposal{
				Extensions: []mls.Extension{{Type: 0xff00, Data: g.bytes(4)}}}}},
		}
		for _, p := range proposals {
			if *p.out, err = body(p.p); err != nil {
				return nil, err
			}
		}
		// The Update is left pending: member 0 commits an Add instead.
		if err := s.deliver(1, upd); err != nil {
			return nil, err
		}
		p, err := s.commit(0, &mls.CommitOptions{Add: []*mls.KeyPackage{kp.KeyPackage}, ForcePath: true}, []*mls.KeyPackagePrivate{kp})
		if err != nil {
			return nil, err
		}
		v.MLSWelcome = messageBytes(p.Welcome)
		v.PublicMessageCommit = messageBytes(p.Commit)
		if v.Commit, err = p.Commit.PublicMessage.Content.Commit.Bytes(); err != nil {
			return nil, err
		}
		gi, err := s.members[0].GroupInfo(&mls.GroupInfoOptions{ExternalPub: true})
		if err != nil {
			return nil, err
		}
		v.MLSGroupInfo = messageBytes(gi)
		v.RatchetTree = slices.Clone(s.members[0].RatchetTree())
		gs := &groupSecrets{joinerSecret: g.bytes(nh), pathSecret: g.bytes(nh), psks: []keyschedule.PreSharedKeyID{
			{PSKType: keyschedule.PSKTypeExternal, PSKID: g.bytes(8), PSKNonce: g.bytes(nh)}}}
		if v.GroupSecrets, err = gs.bytes(); err != nil {
			return nil, err
		}
		app, err := s.members[2].EncryptApplication(g.bytes(20), g.bytes(4))
		if err != nil {
			return nil, err
		}
		v.PrivateMessage = messageBytes(app)
		// Application data is never sent as a PublicMessage by members;
		// the format still allows one, so build it from the commit's
		// framing with an application body.
		pub := *p.Commit.PublicMessage
		pub.Content.ContentType = mls.ContentTypeApplication
		pub.Content.Commit, pub.Content.ApplicationData = nil, g.bytes(20)
		pub.Auth.ConfirmationTag = nil
		v.PublicMessageApplication = messageBytes(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatPublicMessage, PublicMessage: &pub})
		out = append(out, v)
	}
	return out, nil
}

type welcomeVector struct {
	CipherSuite uint16   `json:"cipher_suite"`
	InitPriv    hexBytes `json:"init_priv"`
	KeyPackage  hexBytes `json:"key_package"`
	SignerPub   hexBytes `json:"signer_pub"`
	Welcome     hexBytes `json:"welcome"`
}

// openWelcome decrypts the GroupSecrets and the GroupInfo of a Welcome
// for kp (RFC 9420, Section 12.4.3.1).
func openWelcome(cs mls.CipherSuite, w *mls.Welcome, kp *mls.KeyPackage, initKey *hpke.PrivateKey) (*groupSecrets, []byte, error) {
	ref, err := kp.Ref()
	if err != nil {
		return nil, nil, err
	}
	for _, egs := range w.Secrets {
		if !bytes.Equal(egs.NewMember, ref) {
			continue
		}
		ct := egs.EncryptedGroupSecrets
		pt, err := cs.DecryptWithLabel(initKey, "Welcome", w.EncryptedGroupInfo, ct.KEMOutput, ct.Ciphertext)
		if err != nil {
			return nil, nil, fmt.Errorf("group secrets: %w", err)
		}
		gs, err := parseGroupSecrets(pt)
		if err != nil {
			return nil, nil, fmt.Errorf("group secrets: %w", err)
		}
		if len(gs.psks) != 0 {
			return nil, nil, fmt.Errorf("group secrets name %d PSKs the vector does not hold", len(gs.psks))
		}
		joiner, err := keyschedule.NewJoinerSecret(cs, gs.joinerSecret)
		if err != nil {
			return nil, nil, err
		}
		ws := joiner.WelcomeSecret(nil)
		gi, err := cs.AEADOpen(ws.Key(), ws.Nonce(), nil, w.EncryptedGroupInfo)
		if err != nil {
			return nil, nil, fmt.Errorf("group info: %w", err)
		}
		return gs, gi, nil
	}
	return nil, nil, errors.New("no group secrets for the key package")
}

// checkWelcome checks that the Welcome decrypts with the KeyPackage's
// private init key, that its GroupInfo is signed by signer_pub and that
// its confirmation tag verifies (RFC 9420, Section 12.4.3.1).
func checkWelcome(c *checker, v *welcomeVector) {
	cs := c.suite(v.CipherSuite)
	kpMsg, err := mls.ParseMessage(v.KeyPackage)
	c.must("key_package", err)
	kp := kpMsg.KeyPackage
	if kp == nil {
		c.fatalf("key_package is not a KeyPackage")
	}
	initKey, err := cs.NewPrivateKey(v.InitPriv)
	c.must("init_priv", err)
	c.equal("init key", initKey.PublicKey(), kp.InitKey)
	wMsg, err := mls.ParseMessage(v.Welcome)
	c.must("welcome", err)
	w := wMsg.Welcome
	if w == nil || w.CipherSuite != cs {
		c.fatalf("welcome is not a Welcome of suite %v", cs)
	}
	gs, giBytes, err := openWelcome(cs, w, kp, initKey)
	c.must("opening the welcome", err)
	gi, err := mls.ParseGroupInfo(giBytes)
	c.must("ParseGroupInfo", err)
	tbs := giBytes[:len(giBytes)-len(wire.AppendVarint(nil, uint32(len(gi.Signature))))-len(gi.Signature)]
	c.must("group info signature", cs.VerifyWithLabel(v.SignerPub, "GroupInfoTBS", tbs, gi.Signature))
	joiner, err := keyschedule.NewJoinerSecret(cs, gs.joinerSecret)
	c.must("joiner secret", err)
	ctx := gi.GroupContext
	if !joiner.EpochSecret(nil, ctx.Bytes()).Derive().VerifyConfirmationTag(ctx.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		c.errorf("confirmation tag does not verify")
	}
	// The encrypted GroupInfo is the HPKE context of the group secrets, so
	// altering it must make both fail.
	bad := *w
	bad.EncryptedGroupInfo = bytes.Clone(w.EncryptedGroupInfo)
	bad.EncryptedGroupInfo[0] ^= 1
	if _, _, err := openWelcome(cs, &bad, kp, initKey); !errors.Is(err, hpke.ErrDecryption) {
		c.errorf("tampered group info: %v, want ErrDecryption", err)
	}
}

func genWelcome(g *generator) ([]welcomeVector, error) {
	var out []welcomeVector
	for _, cs := range rfcSuites {
		s, err := newSim(g, cs, 2)
		if err != nil {
			return nil, err
		}
		committer, err := s.pick()
		if err != nil {
			return nil, err
		}
		p, kps, err := s.add(committer, 1)
		if err != nil {
			return nil, err
		}
		kp := kps[0]
		out = append(out, welcomeVector{
			CipherSuite: uint16(cs),
			InitPriv:    kp.InitKey.Bytes(),
			KeyPackage:  messageBytes(&mls.MLSMessage{Version: mls.MLS10, WireFormat: mls.WireFormatKeyPackage, KeyPackage: kp.KeyPackage}),
			SignerPub:   s.members[committer].Members()[committer].SignatureKey,
			Welcome:     messageBytes(p.Welcome),
		})
	}
	return out, nil
}

type messageProtectionVector struct {
	CipherSuite             uint16   `json:"cipher_suite"`
	GroupID                 hexBytes `json:"group_id"`
	Epoch                   uint64   `json:"epoch"`
	TreeHash                hexBytes `json:"tree_hash"`
	ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
	SignaturePriv           hexBytes `json:"signature_priv"`
	SignaturePub            hexBytes `json:"signature_pub"`
	EncryptionSecret        hexBytes `json:"encryption_secret"`
	SenderDataSecret        hexBytes `json:"sender_data_secret"`
	MembershipKey           hexBytes `json:"membership_key"`
	Proposal                hexBytes `json:"proposal"`
	ProposalPriv            hexBytes `json:"proposal_priv"`
	ProposalPub             hexBytes `json:"proposal_pub"`
	Commit                  hexBytes `json:"commit"`
	CommitPriv              hexBytes `json:"commit_priv"`
	CommitPub               hexBytes `json:"commit_pub"`
	Application             hexBytes `json:"application"`
	ApplicationPriv         hexBytes `json:"application_priv"`
}

// The message-protection vectors use a secret tree of two leaves; the
// sender is leaf 1.
const protectionLeaves, protectionSender = 2, 1

func (v *messageProtectionVector) keys(cs hpke.CipherSuite) *vectorhook.EpochKeys {
	return &vectorhook.EpochKeys{
		CipherSuite:      uint16(cs),
		GroupContext:     groupContextBytes(cs, v.GroupID, v.Epoch, v.TreeHash, v.ConfirmedTranscriptHash),
		EncryptionSecret: v.EncryptionSecret, SenderDataSecret: v.SenderDataSecret, MembershipKey: v.MembershipKey,
		LeafCount: protectionLeaves,
	}
}

// framedContent returns the AuthenticatedContent the vector's sender would
// protect for the given content type and body, with an empty signature
// (and a zero confirmation tag for a commit).
func (v *messageProtectionVector) framedContent(cs hpke.CipherSuite, wf mls.WireFormat, ct mls.ContentType, body []byte, ad []byte) (*mls.AuthenticatedContent, error) {
	ac := &mls.AuthenticatedContent{WireFormat: wf, Content: mls.FramedContent{
		GroupID: v.GroupID, Epoch: v.Epoch, Sender: mls.Sender{Type: mls.SenderTypeMember, Index: protectionSender},
		AuthenticatedData: ad, ContentType: ct,
	}}
	var err error
	switch ct {
	case mls.ContentTypeApplication:
		ac.Content.ApplicationData = body
	case mls.ContentTypeProposal:
		ac.Content.Proposal, err = mls.ParseProposal(body)
	case mls.ContentTypeCommit:
		ac.Content.Commit, err = mls.ParseCommit(body)
		ac.Auth.ConfirmationTag = make([]byte, cs.HashSize())
	}
	return ac, err
}

// contentBody returns the serialized body of a content: application data,
// Proposal or Commit.
func contentBody(ac *mls.AuthenticatedContent) ([]byte, error) {
	switch ac.Content.ContentType {
	case mls.ContentTypeApplication:
		return ac.Content.ApplicationData, nil
	case mls.ContentTypeProposal:
		return ac.Content.Proposal.Bytes()
	case mls.ContentTypeCommit:
		return ac.Content.Commit.Bytes()
	}
	return nil, errors.New("unknown content type")
}

// unprotect opens msg with the vector's keys and returns its verified
// content.
func (v *messageProtectionVector) unprotect(cs hpke.CipherSuite, msg []byte) (*mls.AuthenticatedContent, error) {
	out, err := vectorhook.Unprotect(v.keys(cs), v.SignaturePub, msg)
	if err != nil {
		return nil, err
	}
	ac, err := mls.ParseAuthenticatedContent(out)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ac.Content.GroupID, v.GroupID) || ac.Content.Epoch != v.Epoch {
		return nil, errors.New("group or epoch differ")
	}
	return ac, nil
}

// checkMessageProtection checks PublicMessage and PrivateMessage
// protection (RFC 9420, Section 6): the vector's messages open to the
// expected content, and messages this implementation protects open too.
func checkMessageProtection(c *checker, v *messageProtectionVector) {
	cs := c.suite(v.CipherSuite)
	priv, err := cs.NewSignaturePrivateKey(v.SignaturePriv)
	c.must("signature_priv", err)
	c.equal("signature key pair", priv.PublicKey(), v.SignaturePub)
	for _, tc := range []struct {
		name      string
		ct        mls.ContentType
		want      []byte
		pub, priv []byte
	}{
		{"proposal", mls.ContentTypeProposal, v.Proposal, v.ProposalPub, v.ProposalPriv},
		{"commit", mls.ContentTypeCommit, v.Commit, v.CommitPub, v.CommitPriv},
		{"application", mls.ContentTypeApplication, v.Application, nil, v.ApplicationPriv},
	} {
		c.sub(tc.name, func() {
			for _, msg := range [][]byte{tc.pub, tc.priv} {
				if msg == nil {
					continue
				}
				ac, err := v.unprotect(cs, msg)
				c.must("unprotect", err)
				got, err := contentBody(ac)
				c.must("content", err)
				c.equal("content", got, tc.want)
			}
			for _, wf := range []mls.WireFormat{mls.WireFormatPublicMessage, mls.WireFormatPrivateMessage} {
				if wf == mls.WireFormatPublicMessage && tc.ct == mls.ContentTypeApplication {
					continue // application data is never sent as a PublicMessage
				}
				ac, err := v.framedContent(cs, wf, tc.ct, tc.want, []byte("ad"))
				c.must("content", err)
				acBytes, err := ac.Bytes()
				c.must("content", err)
				data, err := vectorhook.Protect(v.keys(cs), v.SignaturePriv, acBytes)
				c.must("protect", err)
				got, err := v.unprotect(cs, data)
				c.must(fmt.Sprintf("wire format %d: unprotecting our own message", wf), err)
				body, err := contentBody(got)
				c.must("content", err)
				if !bytes.Equal(body, tc.want) || !bytes.Equal(got.Content.AuthenticatedData, []byte("ad")) {
					c.errorf("wire format %d: round trip differs", wf)
				}
				for _, pos := range []int{len(data) - 1, len(data) / 2, 30} {
					bad := bytes.Clone(data)
					bad[pos] ^= 0x01
					if _, err := v.unprotect(cs, bad); err == nil {
						c.errorf("wire format %d: flipped bit at %d accepted", wf, pos)
					}
				}
			}
		})
	}
}

func genMessageProtection(g *generator) ([]messageProtectionVector, error) {
	var out []messageProtectionVector
	for _, cs := range rfcSuites {
		nh := cs.HashSize()
		sig, err := cs.GenerateSignatureKey()
		if err != nil {
			return nil, err
		}
		v := messageProtectionVector{
			CipherSuite: uint16(cs), GroupID: g.bytes(16), Epoch: uint64(g.intn(1 << 20)),
			TreeHash: g.bytes(nh), ConfirmedTranscriptHash: g.bytes(nh),
			SignaturePriv: sig.Bytes(), SignaturePub: sig.PublicKey(),
			EncryptionSecret: g.bytes(nh), SenderDataSecret: g.bytes(nh), MembershipKey: g.bytes(nh),
			Application: g.bytes(32),
		}
		remove := &mls.Proposal{Type: mls.ProposalTypeRemove, Remove: &mls.RemoveProposal{Removed: 0}}
		if v.Proposal, err = remove.Bytes(); err != nil {
			return nil, err
		}
		commit := &mls.Commit{Proposals: []mls.ProposalOrRef{{Type: mls.ProposalOrRefProposal, Proposal: remove}}}
		if v.Commit, err = commit.Bytes(); err != nil {
			return nil, err
		}
		for _, m := range []struct {
			out  *hexBytes
			wf   mls.WireFormat
			ct   mls.ContentType
			body []byte
		}{
			{&v.ProposalPub, mls.WireFormatPublicMessage, mls.ContentTypeProposal, v.Proposal},
			{&v.ProposalPriv, mls.WireFormatPrivateMessage, mls.ContentTypeProposal, v.Proposal},
			{&v.CommitPub, mls.WireFormatPublicMessage, mls.ContentTypeCommit, v.Commit},
			{&v.CommitPriv, mls.WireFormatPrivateMessage, mls.ContentTypeCommit, v.Commit},
			{&v.ApplicationPriv, mls.WireFormatPrivateMessage, mls.ContentTypeApplication, v.Application},
		} {
			ac, err := v.framedContent(cs, m.wf, m.ct, m.body, nil)
			if err != nil {
				return nil, err
			}
			if m.ct == mls.ContentTypeCommit {
				ac.Auth.ConfirmationTag = g.bytes(nh)
			}
			acBytes, err := ac.Bytes()
			if err != nil {
				return nil, err
			}
			if *m.out, err = vectorhook.Protect(v.keys(cs), v.SignaturePriv, acBytes); err != nil {
				return nil, err
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func genTranscriptHashes(g *generator) ([]transcriptVector, error) {
	var out []transcriptVector
	for _, cs := range rfcSuites {
		nh := cs.HashSize()
		v := transcriptVector{CipherSuite: uint16(cs), ConfirmationKey: g.bytes(nh), InterimTranscriptHashBefore: g.bytes(nh)}
		ac := &mls.AuthenticatedContent{
			WireFormat: mls.WireFormatPublicMessage,
			Content: mls.FramedContent{
				GroupID: g.bytes(16), Epoch: uint64(g.intn(1000)), Sender: mls.Sender{Type: mls.SenderTypeMember, Index: uint32(g.intn(10))},
				ContentType: mls.ContentTypeCommit, Commit: &mls.Commit{},
			},
			Auth: mls.FramedContentAuthData{Signature: g.bytes(64), ConfirmationTag: make([]byte, nh)},
		}
		data, err := ac.Bytes()
		if err != nil {
			return nil, err
		}
		input, _, ok := splitConfirmationTag(cs, data)
		if !ok {
			return nil, errors.New("authenticated content does not end with its confirmation tag")
		}
		v.ConfirmedTranscriptHashAfter = keyschedule.ConfirmedTranscriptHash(cs, v.InterimTranscriptHashBefore, input)
		ac.Auth.ConfirmationTag = keyschedule.ConfirmationTag(cs, v.ConfirmationKey, v.ConfirmedTranscriptHashAfter)
		if v.AuthenticatedContent, err = ac.Bytes(); err != nil {
			return nil, err
		}
		v.InterimTranscriptHashAfter = keyschedule.InterimTranscriptHash(cs, v.ConfirmedTranscriptHashAfter, ac.Auth.ConfirmationTag)
		out = append(out, v)
	}
	return out, nil
}
