package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/mpim/mpim/domain"
)

// Platforms of a push token: the domain's (domain.PushPlatform).
const (
	PlatformAPNs    = string(domain.PushAPNs)
	PlatformFCM     = string(domain.PushFCM)
	PlatformWebPush = string(domain.PushWebPush)
	PlatformCustom  = string(domain.PushCustom)
)

// Bounds of a Notification, checked by Submit.
const (
	MaxDevices        = 64
	MaxTokenBytes     = domain.MaxPushTokenBytes
	maxIDBytes        = 256
	maxSenderName     = 256
	maxTextBytes      = 64 << 10
	MaxBadge          = 1_000_000_000
	maxNotifyEstimate = 512 // bytes of a body besides its strings
)

// Headers of a call.
const (
	HeaderTimestamp   = "X-Mpim-Timestamp"
	HeaderSignature   = "X-Mpim-Signature"
	HeaderIdempotency = "Idempotency-Key"
)

// ErrInvalid is wrapped by Submit's error for a notification out of range.
var ErrInvalid = errors.New("webhook: invalid notification")

// Device is one of the user's devices that has a push token and no live
// connection.
type Device struct {
	ID       domain.DeviceID `json:"deviceId"`
	Platform string          `json:"platform"`
	Token    string          `json:"token"`
	AppID    string          `json:"appId,omitempty"`
}

// Notification is one event a user must hear about. Text and SenderName
// feed the preview only; EventID is the event's id in the log, the call's
// idempotency key when the notification is the latest of its call.
// UnreadBadge is the user's unread count, 0..MaxBadge, or nil when it is
// not known: the call then leaves it out.
type Notification struct {
	User         domain.UserID
	Devices      []Device
	Conversation domain.ConversationID // empty for a friend request
	Sender       domain.UserID
	SenderName   string
	Text         string
	EventID      string
	Seq          int64
	UnreadBadge  *int64
}

// Payload is the JSON body of a call (docs/push.md). Count is how many
// notifications the call carries; the other fields are those of the latest.
// UnreadBadge is absent (nil) when the latest did not know it.
type Payload struct {
	User         domain.UserID         `json:"user"`
	Devices      []Device              `json:"devices"`
	Conversation domain.ConversationID `json:"conversation,omitempty"`
	Sender       domain.UserID         `json:"sender,omitempty"`
	Preview      string                `json:"preview,omitempty"`
	EventID      string                `json:"eventId"`
	Seq          int64                 `json:"seq"`
	UnreadBadge  *int64                `json:"unreadBadge,omitempty"`
	Count        int                   `json:"count"`
}

// validate checks n's ranges; i is its index in the batch.
func (n *Notification) validate(i int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %d: %s", ErrInvalid, i, fmt.Sprintf(format, args...))
	}
	if !n.User.Valid() {
		return bad("invalid user %q", n.User)
	}
	if len(n.Devices) < 1 || len(n.Devices) > MaxDevices {
		return bad("must carry 1..%d devices, got %d", MaxDevices, len(n.Devices))
	}
	for _, d := range n.Devices {
		switch {
		case !printable(string(d.ID), maxIDBytes):
			return bad("device id must be 1..%d printable bytes", maxIDBytes)
		case !domain.PushPlatform(d.Platform).Valid():
			return bad("unknown platform %q of device %s", d.Platform, d.ID)
		case !printable(d.Token, MaxTokenBytes):
			return bad("token of device %s must be 1..%d printable bytes, got %d", d.ID, MaxTokenBytes, len(d.Token))
		case d.AppID != "" && !printable(d.AppID, maxIDBytes):
			return bad("app id of device %s must be at most %d printable bytes", d.ID, maxIDBytes)
		}
	}
	switch {
	case n.Conversation != "" && !printable(string(n.Conversation), maxIDBytes):
		return bad("conversation must be at most %d printable bytes", maxIDBytes)
	case n.Sender != "" && !n.Sender.Valid():
		return bad("invalid sender %q", n.Sender)
	case len(n.SenderName) > maxSenderName || !utf8.ValidString(n.SenderName):
		return bad("sender name must be valid UTF-8 of at most %d bytes", maxSenderName)
	case len(n.Text) > maxTextBytes || !utf8.ValidString(n.Text):
		return bad("text must be valid UTF-8 of at most %d bytes", maxTextBytes)
	case !printable(n.EventID, maxIDBytes):
		return bad("event id must be 1..%d printable bytes", maxIDBytes)
	case n.Seq < 0:
		return bad("seq must not be negative, got %d", n.Seq)
	case n.UnreadBadge != nil && (*n.UnreadBadge < 0 || *n.UnreadBadge > MaxBadge):
		return bad("unread badge must be 0..%d, got %d", MaxBadge, *n.UnreadBadge)
	}
	return nil
}

// printable reports whether s is 1..max bytes of printable ASCII.
func printable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// payload returns n's payload with the preview of mode, count 1.
func (n *Notification) payload(mode PreviewMode, maxPreview int) Payload {
	name := n.SenderName
	if name == "" {
		name = string(n.Sender)
	}
	var preview string
	switch mode {
	case PreviewSender:
		preview = name
	case PreviewText:
		preview = n.Text
		if name != "" {
			preview = name + ": " + n.Text
		}
	}
	// The devices are copied: the caller may reuse its slice.
	return Payload{User: n.User, Devices: slices.Clone(n.Devices), Conversation: n.Conversation, Sender: n.Sender,
		Preview: cut(preview, maxPreview), EventID: n.EventID, Seq: n.Seq, UnreadBadge: badge(n.UnreadBadge), Count: 1}
}

// badge returns a copy of b, so that a payload shares nothing with its
// caller's notification.
func badge(b *int64) *int64 {
	if b == nil {
		return nil
	}
	return new(*b)
}

// size estimates the bytes of p's body, for the byte bound of held calls.
func (p *Payload) size() int64 {
	n := maxNotifyEstimate + len(p.User) + len(p.Conversation) + len(p.Sender) + len(p.Preview) + len(p.EventID)
	for _, d := range p.Devices {
		n += 64 + len(d.ID) + len(d.Platform) + len(d.Token) + len(d.AppID)
	}
	return int64(n)
}

// cut returns s cut to at most max bytes at a character boundary.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// marshal returns p's body.
func (p *Payload) marshal() []byte {
	b, _ := json.Marshal(p) // strings, numbers and slices of them: cannot fail
	return b
}

// Sign returns the X-Mpim-Signature value of body sent at timestamp ts
// (Unix seconds): "v1=" and the hex HMAC-SHA256 of "<ts>.<body>" under
// secret.
func Sign(secret []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(strconv.AppendInt(nil, ts, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature is the v1 signature of body at ts under
// secret, in constant time. A receiver should also refuse a ts far from its
// clock (docs/push.md).
func Verify(secret []byte, ts int64, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature))
}
