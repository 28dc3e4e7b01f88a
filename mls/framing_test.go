package mls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/microchat/e2ee/keyschedule"
)

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

// newVectorFramer returns a framer for the vector's epoch with a fresh
// secret tree of two leaves (the sender is leaf 1).
func newVectorFramer(t *testing.T, v *messageProtectionVector) *framer {
	t.Helper()
	cs := CipherSuite(v.CipherSuite)
	ctx := GroupContext{
		Version: keyschedule.MLS10, CipherSuite: cs, GroupID: v.GroupID, Epoch: v.Epoch,
		TreeHash: v.TreeHash, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash,
	}
	st, err := keyschedule.NewSecretTree(cs, v.EncryptionSecret, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &framer{
		cs: cs, groupID: v.GroupID, epoch: v.Epoch, groupContext: ctx.Bytes(),
		membershipKey: v.MembershipKey, senderDataSecret: v.SenderDataSecret, secretTree: st,
	}
}

// unprotectVector opens a protected message of the vector and returns its
// verified content.
func unprotectVector(t *testing.T, f *framer, v *messageProtectionVector, data []byte) *AuthenticatedContent {
	t.Helper()
	m, err := ParseMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(ac *AuthenticatedContent) error {
		return verifyContent(f.cs, v.SignaturePub, ac, f.groupContext)
	}
	var ac *AuthenticatedContent
	switch m.WireFormat {
	case WireFormatPublicMessage:
		ac, err = f.unprotectPublic(m.PublicMessage)
		if err == nil {
			err = verify(ac)
		}
	case WireFormatPrivateMessage:
		ac, err = f.unprotectPrivate(m.PrivateMessage, verify)
	default:
		t.Fatalf("unexpected wire format %d", m.WireFormat)
	}
	if err != nil {
		t.Fatalf("unprotect: %v", err)
	}
	if !bytes.Equal(ac.Content.GroupID, v.GroupID) || ac.Content.Epoch != v.Epoch {
		t.Fatalf("group or epoch differ")
	}
	return ac
}

func contentBytes(t *testing.T, ac *AuthenticatedContent) []byte {
	t.Helper()
	var out []byte
	var err error
	switch ac.Content.ContentType {
	case ContentTypeApplication:
		return ac.Content.ApplicationData
	case ContentTypeProposal:
		out, err = ac.Content.Proposal.Bytes()
	case ContentTypeCommit:
		out, err = ac.Content.Commit.Bytes()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testMessageProtection(t *testing.T, v *messageProtectionVector) {
	cs := CipherSuite(v.CipherSuite)
	priv, err := cs.NewSignaturePrivateKey(v.SignaturePriv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey(), v.SignaturePub) {
		t.Fatal("signature key pair mismatch")
	}
	proposal, err := ParseProposal(v.Proposal)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := ParseCommit(v.Commit)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		ct      ContentType
		want    []byte
		pub     []byte
		private []byte
	}{
		{"proposal", ContentTypeProposal, v.Proposal, v.ProposalPub, v.ProposalPriv},
		{"commit", ContentTypeCommit, v.Commit, v.CommitPub, v.CommitPriv},
		{"application", ContentTypeApplication, v.Application, nil, v.ApplicationPriv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Unprotect the vector's messages.
			if tc.pub != nil {
				ac := unprotectVector(t, newVectorFramer(t, v), v, tc.pub)
				if got := contentBytes(t, ac); !bytes.Equal(got, tc.want) {
					t.Errorf("public: content differs")
				}
			}
			f := newVectorFramer(t, v)
			ac := unprotectVector(t, f, v, tc.private)
			if got := contentBytes(t, ac); !bytes.Equal(got, tc.want) {
				t.Errorf("private: content differs")
			}
			// Replaying the private message must fail: its key is consumed.
			m, _ := ParseMessage(tc.private)
			if _, err := f.unprotectPrivate(m.PrivateMessage, nil); !errors.Is(err, ErrKeyUsed) {
				t.Errorf("replay: err = %v, want ErrKeyUsed", err)
			}

			// Protect the same content ourselves and unprotect it.
			content := FramedContent{
				GroupID: v.GroupID, Epoch: v.Epoch, Sender: Sender{Type: SenderTypeMember, Index: 1},
				AuthenticatedData: []byte("ad"), ContentType: tc.ct,
			}
			switch tc.ct {
			case ContentTypeApplication:
				content.ApplicationData = v.Application
			case ContentTypeProposal:
				content.Proposal = proposal
			case ContentTypeCommit:
				content.Commit = commit
			}
			for _, wf := range []WireFormat{WireFormatPublicMessage, WireFormatPrivateMessage} {
				if wf == WireFormatPublicMessage && tc.ct == ContentTypeApplication {
					continue // application data is never sent as a PublicMessage
				}
				sender := newVectorFramer(t, v)
				ac := &AuthenticatedContent{WireFormat: wf, Content: content}
				if err := signContent(cs, priv, ac, sender.groupContext); err != nil {
					t.Fatal(err)
				}
				if tc.ct == ContentTypeCommit {
					ac.Auth.ConfirmationTag = make([]byte, cs.HashSize())
				}
				msg := &MLSMessage{Version: MLS10, WireFormat: wf}
				if wf == WireFormatPublicMessage {
					msg.PublicMessage, err = sender.protectPublic(ac)
				} else {
					msg.PrivateMessage, err = sender.protectPrivate(ac, func(int) int { return 17 })
				}
				if err != nil {
					t.Fatal(err)
				}
				data, err := msg.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				got := unprotectVector(t, newVectorFramer(t, v), v, data)
				if !bytes.Equal(contentBytes(t, got), tc.want) || !bytes.Equal(got.Content.AuthenticatedData, []byte("ad")) {
					t.Errorf("%d: round trip differs", wf)
				}
				// Any flipped bit must be rejected.
				for _, pos := range []int{len(data) - 1, len(data) / 2, 30} {
					bad := append([]byte(nil), data...)
					bad[pos] ^= 0x01
					if testUnprotect(newVectorFramer(t, v), v, bad) == nil {
						t.Errorf("%d: flipped bit at %d accepted", wf, pos)
					}
				}
			}
		})
	}
}

// testUnprotect is unprotectVector returning the error instead of failing.
func testUnprotect(f *framer, v *messageProtectionVector, data []byte) error {
	m, err := ParseMessage(data)
	if err != nil {
		return err
	}
	verify := func(ac *AuthenticatedContent) error { return verifyContent(f.cs, v.SignaturePub, ac, f.groupContext) }
	if m.PublicMessage != nil {
		ac, err := f.unprotectPublic(m.PublicMessage)
		if err != nil {
			return err
		}
		return verify(ac)
	}
	if m.PrivateMessage == nil {
		return errors.New("not a protected message")
	}
	_, err = f.unprotectPrivate(m.PrivateMessage, verify)
	return err
}
