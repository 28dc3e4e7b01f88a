package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/microchat/e2ee/mls"
)

// TestChat runs the whole example and checks its transcript.
func TestChat(t *testing.T) {
	for _, tc := range []struct {
		cs      mls.CipherSuite
		members int
	}{
		{mls.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, 4},
		{mls.MLS_256_DHKEMP384_AES256GCM_SHA384_P384, 3},
		{mls.MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519, 40},
	} {
		t.Run(tc.cs.String(), func(t *testing.T) {
			var out bytes.Buffer
			if err := run(tc.cs, tc.members, t.TempDir(), &out); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			for _, want := range []string{
				"alice creates group",
				"they join from the Welcome",
				"carol tries to read alice's next message: mls: this member is no longer in the group",
				"bob's laptop joins by external commit",
				`bob's phone restarts from its database and reads: alice (leaf 0): "welcome, laptop"`,
				"online clients agree on epoch authenticator",
				" 0 of ",
				"sealed envelopes directly followed a token issuance to their sender",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("transcript lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
