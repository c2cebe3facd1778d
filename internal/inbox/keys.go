package inbox

import (
	"time"

	"github.com/mpim/mpim/domain"
)

// Recommended lifetimes. The gateway owns both keys and may configure other
// values; readers never depend on them.
const (
	// RouteTTL is how long a presence route lives without a heartbeat. The
	// gateway heartbeats at a fraction of it (a third, say), so a live route
	// survives a late heartbeat and a dead gateway's routes go within RouteTTL.
	RouteTTL = 60 * time.Second
	// CursorTTL is how long a device's cursor outlives the device's last
	// acknowledgement.
	CursorTTL = 30 * 24 * time.Hour
	// RouteChangesLen is about how many route changes the route change
	// stream keeps (MAXLEN ~): a reader that falls further behind sees a gap
	// in the change numbers and starts its cache over.
	RouteChangesLen = 10_000
)

// Keys builds the delivery key names of one deployment (see the package
// comment for who writes and reads each). The zero Keys has an empty prefix.
type Keys struct {
	prefix string
}

// NewKeys returns the Keys of the deployment whose keys start with prefix.
func NewKeys(prefix string) Keys { return Keys{prefix: prefix} }

// Prefix returns the deployment prefix.
func (k Keys) Prefix() string { return k.prefix }

// Inbox returns the key of user's inbox stream: "<prefix>inbox:{<user>}".
func (k Keys) Inbox(user domain.UserID) string {
	return k.prefix + "inbox:{" + string(user) + "}"
}

// InboxBytes returns the key of the byte count of user's inbox, under the
// user's hash tag: "<prefix>inbox:{<user>}:bytes".
func (k Keys) InboxBytes(user domain.UserID) string {
	return k.prefix + "inbox:{" + string(user) + "}:bytes"
}

// Cursor returns the key of a device's cursor, under the user's hash tag:
// "<prefix>inbox:{<user>}:cursor:<device>".
func (k Keys) Cursor(user domain.UserID, device domain.DeviceID) string {
	return k.prefix + "inbox:{" + string(user) + "}:cursor:" + string(device)
}

// Presence returns the key of user's presence routes, a hash of device to
// encoded Route: "<prefix>presence:{<user>}".
func (k Keys) Presence(user domain.UserID) string {
	return k.prefix + "presence:{" + string(user) + "}"
}

// Notify returns the pub/sub channel of a gateway: "<prefix>notify:{<gateway>}".
func (k Keys) Notify(gateway string) string {
	return k.prefix + "notify:{" + gateway + "}"
}

// LastSeen returns the key of the time user was last seen, under the user's
// hash tag: "<prefix>lastseen:{<user>}".
func (k Keys) LastSeen(user domain.UserID) string {
	return k.prefix + "lastseen:{" + string(user) + "}"
}

// Signal returns the pub/sub channel that carries ephemeral signals (typing,
// presence changes) to a gateway: "<prefix>signal:{<gateway>}".
func (k Keys) Signal(gateway string) string {
	return k.prefix + "signal:{" + gateway + "}"
}

// RouteChanges returns the key of the stream of route changes (a
// RouteChange per entry) under the hash tag "{routes}":
// "<prefix>{routes}:changes".
func (k Keys) RouteChanges() string { return k.prefix + "{routes}:changes" }

// RouteSeq returns the key of the counter that numbers route changes, beside
// the stream under the same hash tag: "<prefix>{routes}:seq".
func (k Keys) RouteSeq() string { return k.prefix + "{routes}:seq" }
