// Package sealedsender delivers MLS messages without revealing who sent
// them: delivery tokens that each carry the right to send one message, and
// the sealed envelope that carries an MLS PrivateMessage to the delivery
// service with such a token and nothing else.
//
// # Token schemes
//
// Two schemes are available behind the same interfaces: an [Issuer] hands
// out batches of tokens to an authenticated account, within a per-account
// quota for each period, and a [Redeemer] checks a token presented in an
// envelope and marks it spent in one atomic step of a [SpentStore], so that
// every token is accepted at most once.
//
//   - [SchemeSimple] is the scheme of the original MicroChat design: batches
//     of 32-byte random tokens from crypto/rand, of which the server keeps
//     only the SHA-256 digest. The issuing server sees every token it hands
//     out, so it can link each redeemed token to the account that fetched it.
//     It only protects against parties that see the envelopes but not the
//     issuer's records.
//   - [SchemePrivacyPass] issues tokens blindly, as Privacy Pass token type
//     0x0001 (VOPRF(P-384, SHA-384), RFC 9578, Section 5), or 0x0005
//     (VOPRF(ristretto255, SHA-512)), in amortized batches with one DLEQ
//     proof (draft-ietf-privacypass-batched-tokens). The issuer never sees
//     the tokens it helps create, so at redemption it can check that a token
//     is valid but cannot tell which issuance it came from.
//
// Privacy Pass issuer keys rotate by period: the key of each period is
// derived from one master secret, tokens of the current and the previous
// period's key are accepted, and older ones are refused with
// [ErrUnknownKey]. Clients get the keys in a [KeyDirectory] and should
// compare the key IDs they see with those other clients see (for example
// with the other members of their groups); an issuer that gave one client a
// key of its own could otherwise recognize that client's tokens.
//
// # Sealed envelopes
//
// An [Envelope] holds a version, a scheme, a token and an MLS message whose
// wire format must be mls_private_message (RFC 9420, Section 6.3),
// handshake messages included, and optional zero padding up to a size
// bucket. It has no sender field: the sender's leaf index travels in the
// PrivateMessage's encrypted sender data (RFC 9420, Section 6.3.2), which
// only group members can read. [Seal] builds one on the client;
// [Server.Accept] parses one on the delivery service, redeems its token and
// returns the group ID to route the message by.
//
// Nothing in this package touches the network or the disk. Time comes from
// a Now func in the configuration and randomness from crypto/rand.
package sealedsender
