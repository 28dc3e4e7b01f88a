package treekem_test

import (
	"bytes"
	"fmt"

	"github.com/microchat/e2ee/hpke"
	"github.com/microchat/e2ee/treekem"
)

// newClient returns a signing key, an HPKE key and a signed key_package
// leaf node for a new client.
func newClient(cs hpke.CipherSuite, name string) (*hpke.SignaturePrivateKey, *hpke.PrivateKey, *treekem.LeafNode) {
	signer, _ := cs.GenerateSignatureKey()
	enc, _ := cs.GenerateKeyPair()
	leaf := &treekem.LeafNode{
		EncryptionKey: enc.PublicKey(),
		SignatureKey:  signer.PublicKey(),
		Credential:    treekem.Credential{Type: treekem.CredentialBasic, Identity: []byte(name)},
		Capabilities: treekem.Capabilities{
			Versions:     []treekem.ProtocolVersion{treekem.MLS10},
			CipherSuites: []hpke.CipherSuite{cs},
			Credentials:  []treekem.CredentialType{treekem.CredentialBasic},
		},
		Source:   treekem.SourceKeyPackage,
		Lifetime: treekem.Lifetime{NotBefore: 0, NotAfter: 1 << 40},
	}
	leaf.Sign(cs, signer, nil, 0)
	return signer, enc, leaf
}

func Example() {
	cs := hpke.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	groupID := []byte("example group")

	// Alice and Bob form a group.
	tree := treekem.NewTree(cs)
	aliceSigner, _, aliceLeaf := newClient(cs, "alice")
	_, bobKey, bobLeaf := newClient(cs, "bob")
	alice, _ := tree.AddLeaf(aliceLeaf)
	bob, _ := tree.AddLeaf(bobLeaf)
	bobPriv := treekem.NewPrivateKeys(cs, bob, bobKey)

	// Alice commits with a path. The GroupContext would come from the key
	// schedule; any bytes that both sides agree on work here.
	next := tree.Clone()
	pending, err := next.GenerateUpdatePath(alice, nil, aliceSigner, groupID, nil)
	if err != nil {
		panic(err)
	}
	defer pending.Erase()
	groupContext := append([]byte("context "), next.TreeHash()...)
	path, err := pending.Encrypt(groupContext)
	if err != nil {
		panic(err)
	}

	// Bob merges the path into his copy of the tree and decrypts it.
	bobTree := tree.Clone()
	if err := bobTree.MergeUpdatePath(alice, path, nil, &treekem.ValidateOptions{GroupID: groupID}); err != nil {
		panic(err)
	}
	_, commitSecret, err := bobTree.DecryptUpdatePath(bobPriv, alice, path, groupContext, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("same tree:", bytes.Equal(bobTree.TreeHash(), next.TreeHash()))
	fmt.Println("same commit secret:", bytes.Equal(commitSecret, pending.CommitSecret()))
	// Output:
	// same tree: true
	// same commit secret: true
}
