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
// group after every change (see Persistence).
//
// # Persistence
//
// A group is stored as records in a [GroupStore] ([MemoryStore], or
// examples/store on SQLite or PostgreSQL), split by how often they change:
// what is fixed for an epoch (GroupContext, epoch secrets, the ratchet
// tree in chunks that past epochs share) is written once per epoch, and
// what a message changes (secret-tree ratchets, kept out-of-order keys) is
// a few entries of O(log n) bytes. [SaveGroup] writes what changed since
// the last save in one atomic step, guarded by the stored revision, so
// that a crash leaves the old step or the new one and two writers cannot
// both save (the loser gets [ErrConflict] and reopens). [OpenGroup] loads
// a group and decodes the ratchet tree only when an operation needs more
// than a sender's leaf. [Group.MarshalState] and [LoadGroup] remain, as a
// whole-state export (and to migrate states of format 1).
//
// The protocol below guarantees, whatever the point at which a process
// crashes: no fork (no member persists an epoch the group did not adopt),
// nobody stuck (a commit the delivery service accepted is never lost to
// its sender), no message the delivery service accepted lost, and no
// (key, nonce) used for two different plaintexts. The delivery service
// must accept one commit per epoch and must accept the same bytes sent
// twice as one message.
//
//   - Committing: [Group.Commit]; [SavePendingCommit] (the commit and the
//     epoch it leads to, beside the current epoch, which stays current);
//     send the commit. If the delivery service accepts it: send the
//     Welcome and GroupInfo, [Group.MergePendingCommit], [SaveGroup] (a
//     crash before this save repeats the sends, which the delivery service
//     takes once). If another commit of the epoch came first: process and
//     merge that one and [SaveGroup], which drops the stored commit; if the
//     commit is refused for good, [SaveGroup] with
//     [SaveOptions.DiscardPendingCommit].
//   - Restarting: [OpenGroup]; if [Group.RecoveredCommit] returns a commit,
//     ask the delivery service which commit it accepted for the group's
//     epoch: this one ([PendingCommit.Is]): merge, send its Welcome, save;
//     another one: save with DiscardPendingCommit and process that one;
//     none: send the same commit again and go on as above. Then send again
//     what the outbox holds and read what is waiting.
//   - Sending an application message: [Group.EncryptApplication];
//     [SaveGroup] with the message in [SaveOptions.App] (an outbox record);
//     send; [SaveGroup] deleting the outbox record. The advanced ratchet is
//     stored before anything is sent, so no key is used twice, and a
//     message saved but not sent is sent again (the same bytes) after a
//     crash.
//   - Receiving: [Group.Process] (and [Group.Merge] for a commit);
//     [SaveGroup] with the plaintext and the application's read position
//     in [SaveOptions.App]; only then acknowledge the message to the
//     delivery service. A crash before the save gets the message again,
//     and its key is still stored.
//   - Joining: [JoinWithStore]; [SaveGroup] with [SaveOptions.Consumed],
//     which deletes the KeyPackage private key in the same step; then
//     acknowledge the Welcome. A crash before the save joins again.
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
