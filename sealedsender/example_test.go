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
	// Delivery service: one issuer, whose directory and base challenge it
	// publishes. A real server passes durable stores shared by all its
	// replicas (examples/store); the memory store is for examples and tests.
	master := make([]byte, sealedsender.MasterSecretSize)
	rand.Read(master)
	challenge := &sealedsender.TokenChallenge{
		TokenType:  sealedsender.TokenTypeVOPRFP384,
		IssuerName: "issuer.example",
		OriginInfo: "delivery.example",
	}
	mem := sealedsender.NewMemoryStore()
	issuer, err := sealedsender.NewPrivacyPassIssuer(master, challenge, &sealedsender.IssuerConfig{Spent: mem, Quotas: mem})
	if err != nil {
		panic(err)
	}
	dir, _ := issuer.Keys()
	published, _ := dir.Bytes() // JSON, RFC 9578 Section 4
	server := sealedsender.NewServer(issuer)

	// Client, logged in as "alice", ahead of need: check the directory and
	// fetch tokens bound to the group they will pay for. The issuer sees
	// neither the tokens nor the group.
	keys, _ := sealedsender.ParseKeyDirectory(published)
	client, err := sealedsender.NewPrivacyPassClient(keys, issuer.Challenge(), nil)
	if err != nil {
		panic(err)
	}
	var tokens [][]byte
	for range 4 {
		pending, request, _ := client.Request(client.Challenge().ForGroup([]byte("team-42")))
		response, err := issuer.Issue("alice", request) // RFC 9578 TokenRequest/TokenResponse
		if err != nil {
			panic(err)
		}
		token, err := pending.Finalize(response)
		if err != nil {
			panic(err)
		}
		tokens = append(tokens, token)
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
	// A token bound to team-42 does not pay for another group.
	other, _ := sealedsender.Seal(sealedsender.SchemePrivacyPass, tokens[1], privateMessage("team-7"), nil)
	_, err = server.Accept(other)
	fmt.Println(err)
	// Output:
	// 4 tokens; 512-byte envelope for group team-42
	// sealedsender: redeeming token: sealedsender: token already spent
	// sealedsender: token answers another challenge (or group): sealedsender: invalid token
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
