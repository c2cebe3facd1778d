package gateway

import (
	"context"
	"errors"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/accounts"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Codes the gateway raises itself, beside the domain's. Gateway errors are
// *domain.Error values with these codes, so one table maps every error.
const (
	codeBadFrame       domain.Code = "bad_frame"                 // the frame could not be decoded
	codeUnknownRequest domain.Code = "unknown_request"           // a frame without a request this server knows
	codeBadCredentials             = accounts.CodeBadCredentials // wrong username or password
	codeAuthenticated  domain.Code = "already_authenticated"
	// codeOverloaded, Redis short of memory, is raised in memguard.go.
)

// errorCodes is THE table from error codes to the client protocol's stable
// error codes (Error.code); docs/protocol.md lists it. A code missing here
// is reported as "internal".
var errorCodes = map[domain.Code]string{
	domain.EInvalid:      "invalid",
	domain.ENotFound:     "not_found",
	domain.EConflict:     "conflict",
	domain.EExists:       "exists",
	domain.EForbidden:    "forbidden",
	domain.ENotMember:    "not_member",
	domain.EMuted:        "muted",
	domain.EBlocked:      "blocked",
	domain.EWindowPassed: "window_passed",
	domain.EDissolved:    "dissolved",
	domain.ENoRequest:    "no_request",
	domain.ETooLarge:     "too_large",
	domain.EUnauthorized: "unauthenticated",
	domain.ERateLimited:  "rate_limited",
	domain.EUnavailable:  "unavailable",
	domain.EInternal:     "internal",
	codeBadFrame:         "bad_frame",
	codeUnknownRequest:   "unknown_request",
	codeBadCredentials:   "bad_credentials",
	codeAuthenticated:    "already_authenticated",
	codeOverloaded:       "overloaded",
}

// clientError returns the protocol error for err, and whether it is a
// failure of the server (internal, unavailable) rather than of the request.
// The messages of server failures are replaced, so internals do not leak.
func clientError(err error) (*mpimv1.Error, bool) {
	code := domain.ErrorCode(err)
	if code == domain.EInternal && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		code = domain.EUnavailable
	}
	c, ok := errorCodes[code]
	if !ok {
		code, c = domain.EInternal, "internal"
	}
	switch code {
	case domain.EInternal:
		return &mpimv1.Error{Code: c, Message: "internal error"}, true
	case domain.EUnavailable:
		return &mpimv1.Error{Code: c, Message: "service unavailable; retry later"}, true
	}
	return &mpimv1.Error{Code: c, Message: err.Error()}, false
}

// errUnauthenticated is the error of a request that needs a session.
var errUnauthenticated = domain.Errorf(domain.EUnauthorized, "gateway: log in or resume first")

// unavailable wraps a failure of Redis, MySQL or the hub.
func unavailable(what string, err error) error {
	return domain.Errorf(domain.EUnavailable, "gateway: %s: %v", what, err)
}
