// Package errs lets the sentinel errors of several packages that mean the
// same thing match each other with errors.Is, so that a caller of package
// mls can match mls.ErrMalformed whether the bytes failed to decode in mls,
// treekem, keyschedule or the wire codec.
package errs

// classError is a sentinel error of a class: it matches, under errors.Is,
// every sentinel of the same class.
type classError struct {
	msg   string
	class string
}

func (e *classError) Error() string { return e.msg }

// Is reports whether target is a sentinel of the same class.
func (e *classError) Is(target error) bool {
	t, ok := target.(*classError)
	return ok && t.class == e.class
}

// Malformed returns a sentinel error with message msg that matches every
// other Malformed sentinel: bytes that do not decode as the expected
// structure.
func Malformed(msg string) error { return &classError{msg: msg, class: "malformed"} }
