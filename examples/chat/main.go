// Command chat is the MicroChat example: several clients and a delivery
// service in one process, talking through serialized MLS messages.
package main

import (
	"fmt"
	"log"

	"github.com/microchat/e2ee/mls"
)

func main() {
	cs := mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
	sig, err := cs.GenerateSignatureKey()
	if err != nil {
		log.Fatal(err)
	}
	g, err := mls.NewGroup(cs, mls.Credential{Type: mls.CredentialBasic, Identity: []byte("alice")}, sig, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("alice created a group in epoch %d with %d member(s)\n", g.Epoch(), g.MemberCount())
}
