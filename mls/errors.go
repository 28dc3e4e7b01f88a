package mls

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Callers match them with [errors.Is];
// [ValidationError] with [errors.As].
var (
	// ErrUnsupported means a message uses a protocol version, cipher suite,
	// or type that this package or the group does not support.
	ErrUnsupported = errors.New("mls: unsupported version, cipher suite or type")
	// ErrInvalidSignature means a signature on peer input did not verify.
	ErrInvalidSignature = errors.New("mls: invalid signature")
	// ErrDecryption is returned for every AEAD, HPKE, MAC or tag failure
	// on peer input, without saying which, so that failures leak nothing.
	ErrDecryption = errors.New("mls: decryption or authentication failed")
	// ErrWrongGroup means a message is addressed to another group.
	ErrWrongGroup = errors.New("mls: message is for a different group")
	// ErrWrongEpoch means a message is for an epoch other than the
	// group's current one (and not a past epoch still kept).
	ErrWrongEpoch = errors.New("mls: message is for a different epoch")
	// ErrFutureEpoch means a message is for an epoch the group has not
	// reached yet. It also matches ErrWrongEpoch.
	ErrFutureEpoch = errors.New("mls: message is for a future epoch")
	// ErrEpochTooOld means a message is for a past epoch whose keys are no
	// longer kept. It also matches ErrWrongEpoch.
	ErrEpochTooOld = errors.New("mls: message is for an epoch no longer kept")
	// ErrNotFound means a KeyPackage, PSK, proposal or member named by a
	// message is unknown.
	ErrNotFound = errors.New("mls: not found")
	// ErrKeyUsed means the key for a message was already used or deleted:
	// a replayed message, or one that arrived too late (RFC 9420, §9.2).
	ErrKeyUsed = errors.New("mls: message key already used or deleted")
	// ErrTooFarAhead means a message's generation is further ahead of its
	// sender's ratchet than the configured maximum forward distance.
	ErrTooFarAhead = errors.New("mls: message generation too far ahead")
	// ErrNotMember means the Welcome holds no secrets for our KeyPackage.
	ErrNotMember = errors.New("mls: welcome is not addressed to this key package")
	// ErrLeafIndexRange means a leaf index read from a message (a sender,
	// a Remove, a GroupInfo signer) is not a leaf of the group's tree. It
	// comes wrapped in a [ValidationError] naming the section.
	ErrLeafIndexRange = errors.New("mls: leaf index out of range")
)

// ValidationError reports input that is well formed but breaks a rule of
// RFC 9420. Section names the section whose rule was broken, for example
// "12.2".
type ValidationError struct {
	Section string
	Err     error
}

// Error returns the message, naming the RFC section.
func (e *ValidationError) Error() string {
	return fmt.Sprintf("mls: invalid per RFC 9420, §%s: %v", e.Section, e.Err)
}

// Unwrap returns the underlying error.
func (e *ValidationError) Unwrap() error { return e.Err }

// leafOutOfRange returns the error for a leaf index l read from the wire
// that is not below the tree's leaf count n.
func leafOutOfRange(section, what string, l uint32, n uint32) error {
	return &ValidationError{Section: section, Err: fmt.Errorf("%w: %s %d, tree has %d leaves", ErrLeafIndexRange, what, l, n)}
}

func invalid(section, format string, args ...any) error {
	return &ValidationError{Section: section, Err: fmt.Errorf(format, args...)}
}
