package mls

import (
	"golang.org/x/crypto/cryptobyte"

	"github.com/microchat/e2ee/internal/wire"
	"github.com/microchat/e2ee/treekem"
)

// RequiredCapabilities is the body of the required_capabilities extension
// (RFC 9420, §11.1).
type RequiredCapabilities = treekem.RequiredCapabilities

// ExternalSender is one entry of the external_senders extension (RFC 9420,
// §12.1.8.1): a party outside the group allowed to send proposals.
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

func unmarshalExternalSenders(data []byte) ([]ExternalSender, error) {
	var out []ExternalSender
	err := wire.Parse(data, func(s *cryptobyte.String) bool {
		return wire.ReadVector(s, func(s *cryptobyte.String) bool {
			var e ExternalSender
			if !wire.ReadVarintBytes(s, &e.SignatureKey) || !e.Credential.Unmarshal(s) {
				return false
			}
			out = append(out, e)
			return true
		})
	})
	if err != nil {
		return nil, malformed("external_senders extension", err)
	}
	return out, nil
}

// MarshalExternalSenders returns the body of an external_senders extension.
func MarshalExternalSenders(senders []ExternalSender) ([]byte, error) {
	return wire.Marshal(func(b *cryptobyte.Builder) {
		wire.AddVarintPrefixed(b, func(b *cryptobyte.Builder) {
			for i := range senders {
				wire.AddVarintBytes(b, senders[i].SignatureKey)
				senders[i].Credential.Marshal(b)
			}
		})
	})
}

func unmarshalRequiredCapabilities(data []byte) (*RequiredCapabilities, error) {
	rc := new(RequiredCapabilities)
	if err := wire.Parse(data, rc.Unmarshal); err != nil {
		return nil, malformed("required_capabilities extension", err)
	}
	return rc, nil
}

// findExtension returns the data of the first extension of type t.
func findExtension(exts []Extension, t ExtensionType) ([]byte, bool) {
	for i := range exts {
		if exts[i].Type == t {
			return exts[i].Data, true
		}
	}
	return nil, false
}
