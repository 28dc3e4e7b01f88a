// Package keyschedule implements the secrets layer of Messaging Layer
// Security (MLS), RFC 9420: the epoch key schedule, pre-shared keys,
// transcript hashes, and the secret tree with its sender ratchets.
//
// Most users won't need this package directly: package mls drives it. It is
// exported so that the protocol layer above, and tests against the official
// interoperability vectors, can name every secret.
//
// # Key schedule
//
// The key schedule of RFC 9420, Section 8 is modeled as a chain of stage
// types, so that calling the stages out of order is a compile error:
//
//	InitSecret   --JoinerSecret(commit secret, GroupContext)--> JoinerSecret
//	JoinerSecret --WelcomeSecret(PSK secret)-------------------> WelcomeSecret
//	JoinerSecret --EpochSecret(PSK secret, GroupContext)-------> EpochSecret
//	EpochSecret  --Derive()------------------------------------> EpochSecrets
//	EpochSecrets --NextInit()----------------------------------> InitSecret of the next epoch
//
// A group's creator starts from [GenerateInitSecret]; an existing member
// from the [EpochSecrets.NextInit] of its previous epoch; a new member joining
// through a Welcome from the joiner secret in its GroupSecrets
// ([NewJoinerSecret]); and an external joiner from [ExternalInit].
//
// [EpochSecrets] holds every epoch-derived secret of Table 4 and offers the
// MLS-Exporter (Section 8.5), the external key pair (Section 8.3), the
// confirmation and membership tags, and the sender data key (Section 6.3.2).
//
// # Pre-shared keys
//
// [PSKSecret] chains zero or more pre-shared keys, each named by a
// [PreSharedKeyID], into the psk_secret of Section 8.4.
//
// # Transcript hashes
//
// [ConfirmedTranscriptHash] and [InterimTranscriptHash] compute the running
// hashes of Section 8.2 that the [GroupContext] commits to.
//
// # Secret tree
//
// [SecretTree] derives the per-sender handshake and application ratchets of
// Section 9 from the epoch's encryption secret, lazily and leaf by leaf, and
// enforces the deletion schedule of Section 9.2: a secret is erased as soon
// as it has been consumed, a key can be fetched only once, keys for skipped
// generations are kept only within a configured bound, and a generation too
// far ahead is refused with [ErrTooFarAhead] before anything is derived.
//
// A receiver that has not yet authenticated a message fetches its key with
// [SecretTree.UseKey], which consumes the key only if the message decrypts,
// so that a forged message costs the tree nothing.
//
// # Persistence
//
// [SecretTree.Bytes] and [EpochSecrets.Bytes] encode the state, secrets
// included, in versioned binary forms that [ParseSecretTree] and
// [ParseEpochSecrets] restore; [InitSecret.Bytes] and [NewInitSecret] do the
// same for an init secret. The encodings hold only what has not been erased,
// so storing a new state in place of the old one carries the deletion
// schedule over to storage.
//
// # Secrets in memory
//
// Every type holding a secret prints as "[redacted]". Erasing a secret
// overwrites its bytes with zeros and drops the reference; in Go this is best
// effort, as the runtime may have copied the memory earlier.
//
// Unless stated otherwise, the types of this package are not safe for
// concurrent use.
package keyschedule
