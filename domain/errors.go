package domain

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies a domain error. Codes are stable: the gateway maps each to
// a client error code in exactly one table, and clients branch on them.
type Code string

const (
	EInvalid      Code = "invalid"       // malformed input
	ENotFound     Code = "not_found"     // the aggregate or item does not exist
	EConflict     Code = "conflict"      // the state changed under the caller (version conflict)
	EExists       Code = "exists"        // already exists (username taken, already a member)
	EForbidden    Code = "forbidden"     // the actor may not do this
	ENotMember    Code = "not_member"    // the actor is not a member of the group
	EMuted        Code = "muted"         // the actor is muted in the group
	EBlocked      Code = "blocked"       // the other user blocked the actor
	EWindowPassed Code = "window_passed" // the recall/edit window has passed
	EDissolved    Code = "dissolved"     // the group was dissolved
	ENoRequest    Code = "no_request"    // no pending friend request to act on
	ETooLarge     Code = "too_large"     // a size limit was exceeded
	EUnauthorized Code = "unauthorized"  // no valid session or wrong credentials
	ERateLimited  Code = "rate_limited"  // too many requests
	EUnavailable  Code = "unavailable"   // a dependency is down; retry later
	EInternal     Code = "internal"      // a bug or an unexpected failure
)

// Error is a domain error: a code plus a human message, and the cause when
// it has one. Packages wrap it with %w; ErrorCode finds the code through any
// wrapping, and errors.Is and errors.As see the cause through Unwrap.
type Error struct {
	Code    Code
	Message string
	// RetryAfter is, for ERateLimited, how long to wait before trying again;
	// zero when unknown.
	RetryAfter time.Duration
	// Err is the cause (an infrastructure error, say), or nil. Message
	// already includes its text.
	Err error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause, or nil.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrX) match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Errorf returns an *Error with the code and a message formatted as by
// fmt.Errorf: the operand of a %w verb is kept as the cause (with several,
// all of them). Messages are prefixed by the package that raises them
// ("domain: ...").
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	e := &Error{Code: code, Message: err.Error()}
	switch w := err.(type) { //nolint:errorlint // the causes fmt.Errorf kept are this error's own, not its chain's
	case interface{ Unwrap() error }:
		e.Err = w.Unwrap()
	case interface{ Unwrap() []error }:
		e.Err = err
	}
	return e
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal for
// any other non-nil error and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// Sentinels for errors.Is: each matches every *Error of its code.
var (
	ErrInvalid      = &Error{Code: EInvalid}
	ErrNotFound     = &Error{Code: ENotFound}
	ErrConflict     = &Error{Code: EConflict}
	ErrExists       = &Error{Code: EExists}
	ErrForbidden    = &Error{Code: EForbidden}
	ErrNotMember    = &Error{Code: ENotMember}
	ErrMuted        = &Error{Code: EMuted}
	ErrBlocked      = &Error{Code: EBlocked}
	ErrWindowPassed = &Error{Code: EWindowPassed}
	ErrDissolved    = &Error{Code: EDissolved}
	ErrNoRequest    = &Error{Code: ENoRequest}
	ErrTooLarge     = &Error{Code: ETooLarge}
)
