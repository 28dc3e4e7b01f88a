package sealedsender_test

import (
	"crypto/rand"
	"fmt"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/sealedsender"
	"golang.org/x/crypto/cryptobyte"
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

	// Client, later and anonymously: seal an MLS PrivateMessage with a token.
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

// privateMessage stands for an MLSMessage holding a PrivateMessage, which
// package mls produces.
func privateMessage(groupID string) []byte {
	return wire.MustMarshal(func(b *cryptobyte.Builder) {
		b.AddUint16(1) // mls10
		b.AddUint16(2) // mls_private_message
		wire.AddVarintBytes(b, []byte(groupID))
		b.AddUint64(1)                            // epoch
		b.AddUint8(1)                             // application
		wire.AddVarintBytes(b, nil)               // authenticated_data
		wire.AddVarintBytes(b, make([]byte, 24))  // encrypted_sender_data
		wire.AddVarintBytes(b, make([]byte, 200)) // ciphertext
	})
}
