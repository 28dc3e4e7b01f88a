package mls_test

import (
	"context"
	"fmt"
	"log"

	"github.com/microchat/e2ee/mls"
)

func Example() {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519

	// Each client has a long-term signature key and a credential.
	newIdentity := func(name string) (mls.Credential, *mls.SignaturePrivateKey) {
		sig, err := cs.GenerateSignatureKey()
		if err != nil {
			log.Fatal(err)
		}
		return mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}, sig
	}
	aliceCred, aliceSig := newIdentity("alice")
	bobCred, bobSig := newIdentity("bob")
	carolCred, carolSig := newIdentity("carol")

	// Alice creates a group.
	alice, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}

	// Bob publishes a KeyPackage; Alice adds him and sends him the Welcome.
	bobKP, err := mls.GenerateKeyPackage(cs, bobCred, bobSig, nil)
	if err != nil {
		log.Fatal(err)
	}
	commit, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{bobKP.KeyPackage}})
	if err != nil {
		log.Fatal(err)
	}
	// Once the delivery service accepts the commit, Alice merges it.
	if err := alice.MergePendingCommit(commit); err != nil {
		log.Fatal(err)
	}
	welcome, _ := commit.Welcome.Bytes() // what travels over the network
	msg, _ := mls.ParseMessage(welcome)
	bob, err := mls.Join(msg, bobKP, nil, nil)
	if err != nil {
		log.Fatal(err)
	}

	// Alice and Bob exchange a message.
	ct, err := alice.EncryptApplication([]byte("hi Bob"), nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := bob.Process(ct)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bob reads %q in epoch %d\n", res.ApplicationData, bob.Epoch())

	// Bob adds Carol; Alice processes Bob's commit.
	carolKP, err := mls.GenerateKeyPackage(cs, carolCred, carolSig, nil)
	if err != nil {
		log.Fatal(err)
	}
	commit, err = bob.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{carolKP.KeyPackage}})
	if err != nil {
		log.Fatal(err)
	}
	if err := bob.MergePendingCommit(commit); err != nil {
		log.Fatal(err)
	}
	res, err = alice.Process(commit.Commit)
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.Merge(res.Commit); err != nil {
		log.Fatal(err)
	}
	carol, err := mls.Join(commit.Welcome, carolKP, nil, nil)
	if err != nil {
		log.Fatal(err)
	}

	ct, err = carol.EncryptApplication([]byte("hello both"), nil)
	if err != nil {
		log.Fatal(err)
	}
	for name, g := range map[string]*mls.Group{"alice": alice} {
		res, err := g.Process(ct)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s reads %q from leaf %d in epoch %d (%d members)\n", name, res.ApplicationData, res.Sender.Index, g.Epoch(), g.MemberCount())
	}
	// Output:
	// bob reads "hi Bob" in epoch 1
	// alice reads "hello both" from leaf 2 in epoch 2 (3 members)
}

// newIdentity returns a basic credential and a fresh signature key.
func newIdentity(cs mls.CipherSuite, name string) (mls.Credential, *mls.SignaturePrivateKey) {
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		log.Fatal(err)
	}
	return mls.Credential{Type: mls.CredentialBasic, Identity: []byte(name)}, sig
}

// A new device joins by external commit, from a GroupInfo the group
// published (RFC 9420, §12.4.3.2), without anyone adding it.
func ExampleJoinExternal() {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	aliceCred, aliceSig := newIdentity(cs, "alice")
	alice, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	// Alice publishes a GroupInfo with the tree and the external public key.
	gi, err := alice.GroupInfo(&mls.GroupInfoOptions{ExternalPub: true})
	if err != nil {
		log.Fatal(err)
	}

	// Alice's laptop joins with its own signature key.
	_, laptopSig := newIdentity(cs, "alice")
	laptop, commit, err := mls.JoinExternal(gi, aliceCred, laptopSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	// The delivery service accepts the commit; Alice processes it.
	res, err := alice.Process(commit)
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.Merge(res.Commit); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("laptop at leaf %d, epoch %d, %d members, agree: %v\n", laptop.OwnLeafIndex(), laptop.Epoch(),
		alice.MemberCount(), string(alice.EpochAuthenticator()) == string(laptop.EpochAuthenticator()))
	// Output: laptop at leaf 1, epoch 1, 2 members, agree: true
}

// Members derive the same application secrets from the epoch (MLS-Exporter,
// RFC 9420, §8.5), for instance to encrypt attachments or calls.
func ExampleGroup_Export() {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	aliceCred, aliceSig := newIdentity(cs, "alice")
	bobCred, bobSig := newIdentity(cs, "bob")
	alice, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	bobKP, err := mls.GenerateKeyPackage(cs, bobCred, bobSig, nil)
	if err != nil {
		log.Fatal(err)
	}
	commit, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{bobKP.KeyPackage}})
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.MergePendingCommit(commit); err != nil {
		log.Fatal(err)
	}
	bob, err := mls.Join(commit.Welcome, bobKP, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	a, _ := alice.Export("microchat/call-key", []byte("call 7"), 32)
	b, _ := bob.Export("microchat/call-key", []byte("call 7"), 32)
	fmt.Println(len(a), string(a) == string(b))
	// Output: 32 true
}

// A KeyPackage fetched from the delivery service is validated before its
// owner is added, and members are found by identity, not by scanning.
func ExampleKeyPackage_Validate() {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	aliceCred, aliceSig := newIdentity(cs, "alice")
	alice, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	bobCred, bobSig := newIdentity(cs, "bob")
	bobKP, err := mls.GenerateKeyPackage(cs, bobCred, bobSig, nil)
	if err != nil {
		log.Fatal(err)
	}
	// What the delivery service hands out: bytes.
	data, err := bobKP.KeyPackage.Message().Bytes()
	if err != nil {
		log.Fatal(err)
	}
	msg, err := mls.ParseMessage(data)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &mls.Config{ValidateCredential: func(c *mls.Credential, _ []byte) error {
		return nil // consult the directory here
	}}
	if err := msg.KeyPackage.Validate(cfg); err != nil {
		log.Fatal(err) // refuse to add this KeyPackage
	}
	pc, err := alice.Commit(&mls.CommitOptions{Add: []*mls.KeyPackage{msg.KeyPackage}})
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.MergePendingCommit(pc); err != nil {
		log.Fatal(err)
	}
	for _, m := range alice.MembersByIdentity([]byte("bob")) {
		fmt.Printf("bob is at leaf %d\n", m.Index)
	}
	// Output: bob is at leaf 1
}

// A group's protocol settings are saved with it: a restart with another
// Config keeps them, and only the hooks come from the Config given.
func ExampleGroup_SetConfig() {
	ctx := context.Background()
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	aliceCred, aliceSig := newIdentity(cs, "alice")
	alice, err := mls.NewGroup(cs, aliceCred, aliceSig, nil, &mls.Config{Handshake: mls.HandshakePrivate})
	if err != nil {
		log.Fatal(err)
	}
	store := mls.NewMemoryStore()
	if err := mls.SaveGroup(ctx, store, alice, nil); err != nil {
		log.Fatal(err)
	}
	reopened, err := mls.OpenGroup(ctx, store, alice.GroupID(), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("private handshakes after a restart:", reopened.Config().Handshake == mls.HandshakePrivate)
	// Output: private handshakes after a restart: true
}
