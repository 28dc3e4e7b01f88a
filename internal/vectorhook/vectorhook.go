// Package vectorhook lets package testvectors reach the message protection
// of package mls (RFC 9420, Section 6) with epoch secrets taken from a test
// vector, something the public API never offers: a member only ever
// protects messages with the secrets of its own group state.
//
// Package mls sets the functions in an init func, so they are non-nil in
// any program that imports mls. Everything crosses the boundary as
// serialized bytes, so this package imports nothing of the module.
package vectorhook

// EpochKeys are the secrets of one epoch that message protection uses, as
// listed by the message-protection test vectors.
type EpochKeys struct {
	CipherSuite      uint16
	GroupContext     []byte // serialized GroupContext of the epoch
	EncryptionSecret []byte
	SenderDataSecret []byte
	MembershipKey    []byte
	LeafCount        uint32 // leaves of the secret tree
}

// Protect signs the AuthenticatedContent encoded in content (its signature
// is replaced) with signaturePriv and protects it as its wire format says
// (PublicMessage or PrivateMessage, no padding), returning the serialized
// MLSMessage. Every call uses a fresh secret tree, so a PrivateMessage is
// always encrypted with generation 0 of its sender's ratchet.
var Protect func(k *EpochKeys, signaturePriv, content []byte) ([]byte, error)

// Unprotect opens the serialized MLSMessage msg (PublicMessage or
// PrivateMessage), verifies its membership tag or decrypts it, checks its
// signature with signaturePub and returns the serialized
// AuthenticatedContent. Every call uses a fresh secret tree.
var Unprotect func(k *EpochKeys, signaturePub, msg []byte) ([]byte, error)
