// Package mls implements the Messaging Layer Security protocol, RFC 9420:
// its wire messages, message framing, KeyPackages, proposals and commits,
// Welcome and GroupInfo, external joins, pre-shared keys, ReInit and
// branching, and the [Group] state machine that ties them together.
//
// The package performs no I/O. It never reads a clock except through
// [Config.Now], never touches a disk or a network, and returns everything
// to send or to persist as values. Storage ([GroupStore], [KeyStore]) and
// the delivery service ([Transport]) are interfaces the application
// implements; [MemoryStore] is an in-memory store.
//
// # Groups
//
// A client creates a group with [NewGroup], or joins one with [Join] from a
// Welcome addressed to one of its KeyPackages ([GenerateKeyPackage]), or
// with [JoinExternal] from a published GroupInfo. [Group.Commit] adds and
// removes members and refreshes keys; [Group.EncryptApplication] encrypts
// messages; [Group.Process] handles everything received.
//
// # Processing is non-destructive
//
// [Group.Process] validates a message fully before anything changes. A
// commit comes back as a [StagedCommit] that the application may inspect
// (who is added or removed, which PSKs are used) and then applies with
// [Group.Merge]. A commit the member created itself is likewise pending
// until the delivery service accepts it and [Group.MergePendingCommit] is
// called; if another member's commit for the same epoch arrives first,
// that one is merged instead (RFC 9420, §14). A rejected message leaves no
// trace: the encoded state ([Group.MarshalState]) is byte-identical, and a
// PrivateMessage whose content is refused (even with a valid signature)
// consumes no ratchet key, so the same bytes are refused the same way
// again. Two changes happen on success without a merge, as RFC 9420
// requires: the key that decrypted a PrivateMessage is deleted (§9.2), and
// a proposal is cached for the commit that will reference it. Persist the
// state ([Group.MarshalState]) after every change.
//
// # Proposals and who may send what
//
// Proposals received in an epoch are cached, up to
// [Config.MaxCachedProposals] (further ones fail with
// [ErrProposalCacheFull]), and [Group.Commit] commits them. Proposals from
// non-members (external senders and new_member_proposal Adds, RFC 9420,
// §12.1.8) are committed only if [Config.AcceptNonMemberProposal] accepts
// them: by default none is, so an outsider who knows the group ID and epoch
// cannot get itself added. A cached proposal that is, or has become,
// invalid (an expired KeyPackage, a second Add of the same client) is left
// out of the commit and reported in [PendingCommit.Dropped] with its
// reason, rather than making every commit fail. A member holding valid
// proposals must commit them before sending application data (§12.4):
// [Group.EncryptApplication] fails with [ErrPendingProposals] until then.
//
// [Config.Handshake] sets the wire format of handshake messages both ways:
// with [HandshakePrivate] a member's proposal or commit arriving as a
// PublicMessage is refused, with [HandshakePublicOnly] one arriving as a
// PrivateMessage is, both with [ErrWireFormatPolicy]. Every member of a
// group must use the same policy. A joiner refuses a group ID it already
// holds ([ErrGroupExists], §12.4.3) through [JoinOptions.GroupExists] or
// the store of [JoinWithStore].
//
// # Errors
//
// Every failure on peer input is matchable: [ErrMalformed] for bytes that
// do not decode, [ErrDecryption] for every AEAD, HPKE, MAC or tag failure,
// [ErrInvalidSignature], [ErrWrongEpoch] (with [ErrFutureEpoch] or
// [ErrEpochTooOld]), [ErrKeyUsed], [ErrTooFarAhead], [ErrProposalCacheFull],
// and [*ValidationError] naming the RFC section whose rule was broken (some
// also match a sentinel: [ErrLeafIndexRange] for a leaf index that is not
// in the tree, [ErrWireFormatPolicy], [ErrGroupExists]). Peer input never
// causes a panic.
//
// # Concurrency
//
// A [Group] is not safe for concurrent use. Use one per goroutine, or lock.
package mls
