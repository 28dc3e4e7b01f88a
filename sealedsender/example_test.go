package sealedsender_test

import (
	"crypto/rand"
	"fmt"

	"github.com/microchat/e2ee/mls"
	"github.com/microchat/e2ee/sealedsender"
)

// Example shows Privacy Pass tokens going from the issuer to a client and
// back to the delivery service inside a sealed envelope.
func Example() {
	// Delivery service: one issuer, whose keys and challenge it publishes.
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	challenge := &sealedsender.TokenChallenge{
		TokenType:  sealedsender.TokenTypeVOPRFP384,
		IssuerName: "issuer.example",
		OriginInfo: "delivery.example",
	}
	issuer, err := sealedsender.NewPrivacyPassIssuer(master, challenge, nil)
	if err != nil {
		panic(err)
	}
	dir, _ := issuer.Keys()
	published, _ := dir.Bytes()
	server := sealedsender.NewServer(issuer)

	// Client: fetch the keys, request a batch while logged in as "alice".
	keys, _ := sealedsender.ParseKeyDirectory(published)
	client, err := sealedsender.NewPrivacyPassClient(&keys.Keys[0], issuer.Challenge())
	if err != nil {
		panic(err)
	}
	pending, request, _ := client.Request(32)
	response, err := issuer.Issue("alice", request) // the issuer sees only blinded values
	if err != nil {
		panic(err)
	}
	tokens, err := pending.Finalize(response)
	if err != nil {
		panic(err)
	}

	// Client, later and anonymously: seal an MLS PrivateMessage with a token
	// (with mls.Config{Handshake: mls.HandshakePrivate}, commits and
	// proposals are PrivateMessages too).
	envelope, err := sealedsender.Seal(sealedsender.SchemePrivacyPass, tokens[0], privateMessage("team-42"), nil)
	if err != nil {
		panic(err)
	}

	// Delivery service: accept it and route it by group.
	d, err := server.Accept(envelope)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d tokens; %d-byte envelope for group %s\n", len(tokens), len(envelope), d.GroupID)
	_, err = server.Accept(envelope)
	fmt.Println(err)
	// Output:
	// 32 tokens; 512-byte envelope for group team-42
	// sealedsender: redeeming token: sealedsender: token already spent
}

// privateMessage returns an application message of a one-member MLS
// group whose ID is groupID, as package mls produces it.
func privateMessage(groupID string) []byte {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		panic(err)
	}
	cred := mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}
	g, err := mls.NewGroup(cs, cred, sig, &mls.GroupOptions{GroupID: []byte(groupID)}, nil)
	if err != nil {
		panic(err)
	}
	m, err := g.EncryptApplication([]byte("hello"), nil)
	if err != nil {
		panic(err)
	}
	b, err := m.Bytes()
	if err != nil {
		panic(err)
	}
	return b
}
