package mls

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/vectortest"
	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

type hexBytes = vectortest.HexBytes

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

// roundTrip decodes data with unmarshal, re-encodes it with marshal and
// checks the bytes are identical.
func roundTrip(t *testing.T, name string, data []byte, unmarshal func(*cryptobyte.String) bool, marshal func(*cryptobyte.Builder)) {
	t.Helper()
	if err := wire.Parse(data, unmarshal); err != nil {
		t.Errorf("%s: parse: %v", name, err)
		return
	}
	out, err := wire.Marshal(marshal)
	if err != nil {
		t.Errorf("%s: marshal: %v", name, err)
		return
	}
	if !bytes.Equal(out, data) {
		t.Errorf("%s: re-encoding differs\n got %x\nwant %x", name, out, data)
	}
	// Every strict prefix must be rejected.
	for _, cut := range []int{0, len(data) / 2, len(data) - 1} {
		if cut < len(data) && wire.Parse(data[:cut], unmarshal) == nil {
			t.Errorf("%s: truncated to %d bytes was accepted", name, cut)
		}
	}
}

func TestVectors(t *testing.T) {
	vectortest.Run(t, "messages", testMessages)
	vectortest.Run(t, "welcome", testWelcome)
	for _, stem := range []string{"passive-client-welcome", "passive-client-handling-commit", "passive-client-random"} {
		vectortest.Run(t, stem, testPassiveClient)
	}
	vectortest.Run(t, "message-protection", testMessageProtection)
}

// TestGeneratedVectors checks the vectors of ../testdata/vectors, which
// package testvectors generates, with the same checks.
func TestGeneratedVectors(t *testing.T) {
	vectortest.RunGenerated(t, "messages", testMessages)
	vectortest.RunGenerated(t, "welcome", testWelcome)
	for _, stem := range []string{"passive-client-welcome", "passive-client-handling-commit", "passive-client-random"} {
		vectortest.RunGenerated(t, stem, testPassiveClient)
	}
	vectortest.RunGenerated(t, "message-protection", testMessageProtection)
}

func testMessages(t *testing.T, v *messagesVector) {
	for _, tc := range []struct {
		name string
		data []byte
		wf   WireFormat
	}{
		{"mls_welcome", v.MLSWelcome, WireFormatWelcome},
		{"mls_group_info", v.MLSGroupInfo, WireFormatGroupInfo},
		{"mls_key_package", v.MLSKeyPackage, WireFormatKeyPackage},
		{"public_message_application", v.PublicMessageApplication, WireFormatPublicMessage},
		{"public_message_proposal", v.PublicMessageProposal, WireFormatPublicMessage},
		{"public_message_commit", v.PublicMessageCommit, WireFormatPublicMessage},
		{"private_message", v.PrivateMessage, WireFormatPrivateMessage},
	} {
		m, err := ParseMessage(tc.data)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if m.WireFormat != tc.wf {
			t.Errorf("%s: wire format %d, want %d", tc.name, m.WireFormat, tc.wf)
		}
		out, err := m.Bytes()
		if err != nil || !bytes.Equal(out, tc.data) {
			t.Errorf("%s: re-encoding differs (err %v)", tc.name, err)
		}
		if _, err := ParseMessage(append(append([]byte{}, tc.data...), 0)); err == nil {
			t.Errorf("%s: trailing byte accepted", tc.name)
		}
	}

	var gs GroupSecrets
	roundTrip(t, "group_secrets", v.GroupSecrets, gs.unmarshal, gs.marshal)
	var add AddProposal
	roundTrip(t, "add_proposal", v.AddProposal, add.KeyPackage.unmarshal, add.KeyPackage.marshal)
	var upd UpdateProposal
	roundTrip(t, "update_proposal", v.UpdateProposal, upd.LeafNode.Unmarshal, upd.LeafNode.Marshal)
	var rem RemoveProposal
	roundTrip(t, "remove_proposal", v.RemoveProposal,
		func(s *cryptobyte.String) bool { return s.ReadUint32((*uint32)(&rem.Removed)) },
		func(b *cryptobyte.Builder) { b.AddUint32(uint32(rem.Removed)) })

	// The remaining proposal vectors hold the proposal body without its
	// type; wrap them as a Proposal of the right type.
	for _, tc := range []struct {
		name string
		typ  ProposalType
		body []byte
	}{
		{"pre_shared_key_proposal", ProposalTypePreSharedKey, v.PreSharedKeyProposal},
		{"re_init_proposal", ProposalTypeReInit, v.ReInitProposal},
		{"external_init_proposal", ProposalTypeExternalInit, v.ExternalInitProposal},
		{"group_context_extensions_proposal", ProposalTypeGroupContextExtensions, v.GroupContextExtensionsProposal},
		{"add_proposal", ProposalTypeAdd, v.AddProposal},
		{"update_proposal", ProposalTypeUpdate, v.UpdateProposal},
		{"remove_proposal", ProposalTypeRemove, v.RemoveProposal},
	} {
		data := append([]byte{byte(tc.typ >> 8), byte(tc.typ)}, tc.body...)
		p, err := ParseProposal(data)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		out, err := p.Bytes()
		if err != nil || !bytes.Equal(out, data) {
			t.Errorf("%s: re-encoding differs (err %v)", tc.name, err)
		}
	}

	c, err := ParseCommit(v.Commit)
	if err != nil {
		t.Errorf("commit: %v", err)
	} else if out, err := c.Bytes(); err != nil || !bytes.Equal(out, v.Commit) {
		t.Errorf("commit: re-encoding differs (err %v)", err)
	}

	tree, err := treekem.ParseTree(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, v.RatchetTree)
	if err != nil {
		t.Errorf("ratchet_tree: %v", err)
	} else if out := tree.Bytes(); !bytes.Equal(out, v.RatchetTree) {
		t.Errorf("ratchet_tree: re-encoding differs")
	}
}
