// Package treekem implements the ratchet tree of Messaging Layer Security
// (MLS), as specified in RFC 9420, Sections 4 and 7: the contents of leaf
// and parent nodes, resolutions and filtered direct paths, tree hashes,
// parent hashes, leaf node validation, the addition, update and removal of
// leaves, and the creation and processing of UpdatePaths (TreeKEM).
//
// Most users won't need this package directly: package mls builds groups
// on it. It has no I/O and reads no clock; time comes from
// [ValidateOptions.Now] and randomness from crypto/rand.
//
// # Trees
//
// A [Tree] is the public state of a group. [ParseTree] and [Tree.Bytes]
// convert it from and to the ratchet_tree encoding of Section 12.4.3.3.
// Node contents ([LeafNode], [ParentNode]) are immutable once in a tree, so
// [Tree.Clone] is cheap: apply a commit to a clone and keep the original
// until the commit is accepted. Tree hashes are cached per node and
// recomputed only along changed paths. Leaves are indexed by signature key,
// encryption key and identity, so the uniqueness checks RFC 9420 requires
// on every Add, Update and Commit never scan the tree.
//
// # Validation
//
// [Tree.Validate] checks a whole tree as a joining member must (Section
// 12.4.3.1), verifying leaf signatures on several goroutines.
// [Tree.ValidateLeafNode] checks one leaf node about to enter the tree
// (Section 7.3). Errors match sentinels such as [ErrInvalidTree],
// [ErrInvalidSignature] and [ErrParentHashMismatch] with [errors.Is].
//
// # Commits
//
// A committer applies the commit's proposals to a clone of the tree, then
// calls [Tree.GenerateUpdatePath], which applies the new path (keys,
// parent hashes, signed leaf) to that tree. It then computes the new tree
// hash and the provisional GroupContext, and calls [PendingPath.Encrypt]
// to obtain the [UpdatePath] to send. A receiver applies the same
// proposals, calls [Tree.MergeUpdatePath] and, with the provisional
// GroupContext computed from the merged tree, [Tree.DecryptUpdatePath],
// which yields the commit secret and its new [PrivateKeys]. A member added
// by the commit uses [Tree.ImportPathSecret] with the path secret from its
// Welcome.
package treekem
