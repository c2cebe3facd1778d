package inbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxGatewayBytes bounds a gateway id.
const maxGatewayBytes = 64

// ValidGateway reports whether id can name a gateway: 1 to 64 bytes of ASCII
// letters, digits, '.', '_' and '-' (so it never breaks a hash tag, a channel
// name or an encoded Route).
func ValidGateway(id string) bool {
	if id == "" || len(id) > maxGatewayBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Route is a device's presence route: the gateway holding its connection,
// until Expires unless a heartbeat renews it.
type Route struct {
	Gateway string
	// Expires is the route's deadline (millisecond precision). Gateway and
	// projector clocks are assumed to agree to well within RouteTTL.
	Expires time.Time
}

// Live reports whether the route is still valid at now.
func (r Route) Live(now time.Time) bool { return now.Before(r.Expires) }

// Encode returns the hash value of the route: "<gateway> <deadline in Unix
// milliseconds>".
func (r Route) Encode() string {
	return r.Gateway + " " + strconv.FormatInt(r.Expires.UnixMilli(), 10)
}

// DecodeRoute parses an encoded Route.
func DecodeRoute(s string) (Route, error) {
	gw, ms, ok := strings.Cut(s, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || !ValidGateway(gw) {
		return Route{}, fmt.Errorf("inbox: malformed route %q", s)
	}
	return Route{Gateway: gw, Expires: time.UnixMilli(n).UTC()}, nil
}
