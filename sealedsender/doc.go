// Package sealedsender delivers MLS messages without revealing who sent
// them: delivery tokens that each carry the right to send one message, and
// the sealed envelope that carries an MLS PrivateMessage to the delivery
// service with such a token and nothing else.
//
// # Token schemes
//
// Two schemes are available behind the same interfaces: an [Issuer] hands
// out tokens to an authenticated account, within a per-account quota for
// each period, and a [Redeemer] checks a token presented in an envelope
// and marks it spent in one atomic step of a [SpentStore], so that every
// token is accepted at most once.
//
//   - [SchemeSimple] is the scheme of the original MicroChat design: batches
//     of 32-byte random tokens from crypto/rand, of which the server keeps
//     only the SHA-256 digest. The issuing server sees every token it hands
//     out, so it can link each redeemed token to the account that fetched it.
//     It only protects against parties that see the envelopes but not the
//     issuer's records, and its tokens are not bound to a group.
//   - [SchemePrivacyPass] issues tokens blindly, as Privacy Pass token type
//     0x0001 (VOPRF(P-384, SHA-384), RFC 9578, Section 5) or 0x0005
//     (VOPRF(ristretto255, SHA-512)). The issuer never sees the tokens it
//     helps create, so at redemption it can check that a token is valid but
//     cannot tell which issuance it came from.
//
// # Privacy Pass on the wire
//
// [PrivacyPassIssuer.Issue] takes an RFC 9578 TokenRequest and returns a
// TokenResponse; tokens are RFC 9577 Tokens; [PrivacyPassIssuer.Keys] is
// the RFC 9578 issuer directory (JSON); [PrivacyPassIssuer.AuthChallenge],
// [ParseWWWAuthenticate], [AuthorizationHeader] and [ParseAuthorization]
// are the PrivateToken HTTP authentication scheme of RFC 9577. A standard
// Privacy Pass client can therefore fetch and spend tokens of this issuer,
// and [PrivacyPassClient] can use a standard issuer
// ([NewPrivacyPassClientForKey] when its keys have no periods); the RFC
// 9578 test vectors check both directions byte for byte. The amortized
// batches of draft-ietf-privacypass-batched-tokens are an option
// ([PrivacyPassIssuer.IssueBatch], [PrivacyPassClient.RequestBatch]).
//
// # Binding a token to a group
//
// A token answers a TokenChallenge whose redemption_context is derived
// from the destination group's ID ([TokenChallenge.ForGroup]). The client
// chooses it and blinds it into the token input, so issuance reveals
// nothing about the group; [Server.Accept] recomputes it from the group ID
// of the envelope's PrivateMessage, and refuses, without spending it, a
// token that was made for another group. A token lifted from one envelope
// onto another is useless, and the genuine envelope still goes through.
// The price is that a client fetches tokens per group, ahead of need.
//
// # What the server can and cannot learn
//
// The delivery service sees, for each envelope: the group ID and epoch (it
// routes by them), the time, the approximate size (envelopes are padded to
// buckets), the network address (use a proxy or mixnet to hide it), and
// the token, which names the issuer key's period. It cannot read the
// sender, which is in the PrivateMessage's encrypted sender data (RFC
// 9420, Section 6.3.2), and it cannot link a Privacy Pass token to the
// account that fetched it, provided that:
//
//   - every client is given the same key and challenge. A server that
//     gives one client a key (or a challenge) of its own recognizes that
//     client's tokens. Clients refuse keys for periods they do not expect
//     ([NewKeyView]: one key per period, on period boundaries, for the
//     previous, current and next period only), which leaves the server one
//     key per client per period at most; members then compare what they
//     were given through each group ([KeyView.Tag] in the authenticated
//     data of their messages, [KeyView.Check] on receipt). A server that
//     tags a member is caught by the members of its groups that send or
//     receive messages while the tag is in use. It is not caught by a
//     member who never talks with the tagged one, and a server that gives
//     all members of a group the same distinct key learns nothing the
//     envelope's group ID does not already tell it, except across groups:
//     the anonymity set of a client is the set of clients that share its
//     view, which comparisons extend to everyone it shares a group with.
//   - issuance and redemption are not close in time. Fetch tokens ahead of
//     need, at times unrelated to sending (at login, on a timer, while
//     receiving), never on the sending path (see examples/chat). The issuer
//     still learns roughly how many tokens an account uses per period.
//   - tokens of many clients share each period. Quotas bound how many
//     tokens an account can get, not who spends them.
//
// # Safe defaults
//
// Issuers need a durable [SpentStore] and [QuotaStore] shared by all
// replicas: constructing one without fails with [ErrNoStore], and the
// in-memory [MemoryStore] (for tests) must be passed explicitly. Sizes,
// counts, token types and key IDs are checked before anything is parsed or
// verified; [IssuerConfig.BeforeVerify] is the hook to rate-limit the
// remaining, expensive verifications. Keys of the next period are accepted
// within [IssuerConfig.ClockSkew].
//
// Privacy Pass issuer keys rotate by period: the key of each period is
// derived from one master secret, tokens of the previous, current and
// (within the clock skew) next period's key are accepted, and older ones
// are refused with [ErrUnknownKey].
//
// # Sealed envelopes
//
// An [Envelope] holds a version, a scheme, a token and an MLS message whose
// wire format must be mls_private_message (RFC 9420, Section 6.3),
// handshake messages included, and optional zero padding up to a size
// bucket. It has no sender field. [Seal] builds one on the client;
// [Server.Accept] parses one on the delivery service, redeems its token for
// the message's group and returns the group ID to route the message by.
//
// Nothing in this package touches the network or the disk. Time comes from
// a Now func in the configuration and randomness from crypto/rand.
package sealedsender
