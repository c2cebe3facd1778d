package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The close statuses the protocol defines beyond the WebSocket ones
// (docs/protocol.md, "Close codes").
const (
	// StatusPolicy closes a connection that broke a rule: no subprotocol,
	// no authentication in time, idle, or reading too slowly.
	StatusPolicy = websocket.StatusPolicyViolation
	// StatusReplaced closes a connection whose device connected again.
	StatusReplaced websocket.StatusCode = 4001
	// StatusLoggedOut closes a connection whose device was logged out from
	// another device; its tokens are revoked.
	StatusLoggedOut websocket.StatusCode = 4003
)

// Sentinels matched by a *CloseError with errors.Is.
var (
	// ErrReplaced: the same device logged in or resumed again elsewhere.
	// Do not reconnect automatically: the two would take the device from
	// each other.
	ErrReplaced = errors.New("client: replaced: the device connected again elsewhere")
	// ErrLoggedOut: the device was logged out from another device or its
	// password was changed; log in again on purpose.
	ErrLoggedOut = errors.New("client: logged out elsewhere")
	// ErrPolicy: the server closed the connection for breaking a rule.
	ErrPolicy = errors.New("client: closed by policy")
)

// CloseError is how a connection ended when the server closed it with a
// status. It wraps the websocket.CloseError.
type CloseError struct {
	Code   websocket.StatusCode
	Reason string
	err    error
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("client: closed with %d", int(e.Code))
	}
	return fmt.Sprintf("client: closed with %d %s", int(e.Code), e.Reason)
}

// Unwrap returns the websocket.CloseError.
func (e *CloseError) Unwrap() error { return e.err }

// Is matches ErrReplaced, ErrLoggedOut and ErrPolicy by status.
func (e *CloseError) Is(target error) bool {
	switch target {
	case ErrReplaced:
		return e.Code == StatusReplaced
	case ErrLoggedOut:
		return e.Code == StatusLoggedOut
	case ErrPolicy:
		return e.Code == StatusPolicy
	}
	return false
}

// closeError turns a websocket close into a *CloseError; other errors are
// returned as they are.
func closeError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Reason: ce.Reason, err: err}
	}
	return err
}

// ResponseError is an error response (docs/protocol.md, "Errors").
type ResponseError struct {
	Code    string // "unauthenticated", "rate_limited", ...
	Message string
	// RetryAfter is how long to wait before retrying (rate_limited).
	RetryAfter time.Duration
}

func (e *ResponseError) Error() string { return e.Code + ": " + e.Message }

// ResponseErr returns r's error result as a *ResponseError, or nil when r
// succeeded.
func ResponseErr(r *mpimv1.Response) error {
	e := r.GetError()
	if e == nil {
		return nil
	}
	return &ResponseError{Code: e.GetCode(), Message: e.GetMessage(),
		RetryAfter: time.Duration(e.GetRetryAfterMs()) * time.Millisecond}
}

// ErrorCode returns the code of a *ResponseError in err's chain, or "".
func ErrorCode(err error) string {
	var re *ResponseError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}
