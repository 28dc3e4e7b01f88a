package treekem

import (
	"errors"
	"fmt"

	"github.com/microchat/e2ee/internal/errs"
)

// Errors returned by this package. Callers match them with [errors.Is].
// Every error returned by [Tree.Validate] also matches [ErrInvalidTree],
// and every error returned by a leaf node check also matches
// [ErrInvalidLeafNode], so callers can branch on either the broad or the
// precise condition.
var (
	// ErrMalformed means bytes did not decode as the expected structure.
	ErrMalformed = errs.Malformed("treekem: malformed encoding")
	// ErrInvalidTree means a ratchet tree violates RFC 9420 (Sections
	// 7.1-7.9 and 12.4.3.1).
	ErrInvalidTree = errors.New("treekem: invalid ratchet tree")
	// ErrInvalidLeafNode means a leaf node failed validation (RFC 9420,
	// Section 7.3).
	ErrInvalidLeafNode = errors.New("treekem: invalid leaf node")
	// ErrInvalidSignature means a leaf node signature did not verify.
	ErrInvalidSignature = errors.New("treekem: invalid leaf node signature")
	// ErrParentHashMismatch means a parent hash did not verify (RFC 9420,
	// Section 7.9.2).
	ErrParentHashMismatch = errors.New("treekem: parent hash mismatch")
	// ErrDuplicateKey means a signature or encryption key is already used
	// in the tree (RFC 9420, Sections 7.3 and 12.4.3.1).
	ErrDuplicateKey = errors.New("treekem: duplicate key in tree")
	// ErrLifetime means a key_package leaf node is outside its lifetime or
	// its lifetime is longer than allowed.
	ErrLifetime = errors.New("treekem: leaf node lifetime not valid")
	// ErrCapabilities means a leaf node does not support something the
	// group uses or requires, or uses something it does not advertise.
	ErrCapabilities = errors.New("treekem: unsupported capability")
	// ErrCredential means the application rejected a credential (see
	// [ValidateOptions.Credential]).
	ErrCredential = errors.New("treekem: credential rejected")
	// ErrInvalidUpdatePath means an UpdatePath does not fit the tree it is
	// applied to (RFC 9420, Sections 7.5, 7.6 and 12.4.2).
	ErrInvalidUpdatePath = errors.New("treekem: invalid update path")
	// ErrPublicKeyMismatch means a public key derived from a path secret
	// differs from the one in the tree.
	ErrPublicKeyMismatch = errors.New("treekem: derived public key does not match the tree")
	// ErrNoPrivateKey means the member holds no private key able to
	// decrypt its path secret.
	ErrNoPrivateKey = errors.New("treekem: no private key to decrypt the path secret")
	// ErrDecryption means an encrypted path secret failed to decrypt.
	ErrDecryption = errors.New("treekem: path secret decryption failed")
	// ErrBlankLeaf means an operation named a leaf that is blank or out of
	// range.
	ErrBlankLeaf = errors.New("treekem: leaf is blank or out of range")
)

// both returns an error that matches broad and narrow and reads like
// "broad: narrow: detail".
func both(broad, narrow error, format string, args ...any) error {
	if format == "" {
		return fmt.Errorf("%w: %w", broad, narrow)
	}
	return fmt.Errorf("%w: %w: %s", broad, narrow, fmt.Sprintf(format, args...))
}
