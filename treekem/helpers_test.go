package treekem_test

import (
	"fmt"
	"testing"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

// member is a client's secrets: its signing key and the leaf node and HPKE
// key of its KeyPackage.
type member struct {
	signer  *hpke.SignaturePrivateKey
	encKey  *hpke.PrivateKey
	leaf    *treekem.LeafNode
	private *treekem.PrivateKeys // once in the tree
}

var testCapabilities = treekem.Capabilities{
	Versions:    []treekem.ProtocolVersion{treekem.MLS10},
	Extensions:  []treekem.ExtensionType{0xff00},
	Credentials: []treekem.CredentialType{treekem.CredentialBasic, 0x0a0a},
}

// newMember creates a client with a signed key_package leaf node valid
// from 2023 to 2033.
func newMember(tb testing.TB, cs hpke.CipherSuite, name string) *member {
	tb.Helper()
	signer, err := cs.GenerateSignatureKey()
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := cs.GenerateKeyPair()
	if err != nil {
		tb.Fatal(err)
	}
	caps := testCapabilities
	caps.CipherSuites = []hpke.CipherSuite{cs}
	leaf := &treekem.LeafNode{
		EncryptionKey: enc.PublicKey(),
		SignatureKey:  signer.PublicKey(),
		Credential:    treekem.Credential{Type: treekem.CredentialBasic, Identity: []byte(name)},
		Capabilities:  caps,
		Source:        treekem.SourceKeyPackage,
		Lifetime:      treekem.Lifetime{NotBefore: 1672531200, NotAfter: 1988150400},
		Extensions:    []treekem.Extension{{Type: 0xff00, Data: []byte("ext")}},
	}
	if err := leaf.Sign(cs, signer, nil, 0); err != nil {
		tb.Fatal(err)
	}
	return &member{signer: signer, encKey: enc, leaf: leaf}
}

var testGroupID = []byte("test group")

// group is a simulated group: one public tree that every member agrees on
// and each member's private keys.
type group struct {
	cs      hpke.CipherSuite
	tree    *treekem.Tree
	members map[treekem.LeafIndex]*member
	epoch   uint64
}

func newGroup(tb testing.TB, cs hpke.CipherSuite, n int) *group {
	tb.Helper()
	g := &group{cs: cs, tree: treekem.NewTree(cs), members: map[treekem.LeafIndex]*member{}}
	for i := range n {
		g.add(tb, newMember(tb, cs, fmt.Sprintf("member %d", i)))
	}
	return g
}

func (g *group) add(tb testing.TB, m *member) treekem.LeafIndex {
	tb.Helper()
	l, err := g.tree.AddLeaf(m.leaf)
	if err != nil {
		tb.Fatal(err)
	}
	m.private = treekem.NewPrivateKeys(g.cs, l, m.encKey)
	g.members[l] = m
	return l
}

func (g *group) opts() *treekem.ValidateOptions {
	return &treekem.ValidateOptions{GroupID: testGroupID}
}

// commitLocal applies an UpdatePath from sender to the public tree and the
// sender's private keys only, without encrypting: enough to fill parent
// nodes cheaply when building big trees.
func (g *group) commitLocal(tb testing.TB, sender treekem.LeafIndex) {
	tb.Helper()
	m := g.members[sender]
	p, err := g.tree.GenerateUpdatePath(sender, nil, m.signer, testGroupID, nil)
	if err != nil {
		tb.Fatal(err)
	}
	m.private = p.PrivateKeys()
	p.Erase()
}
