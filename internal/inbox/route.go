package inbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
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

// The fields of a route change entry, in this order; the script that
// appends it numbers it (FieldChangeSeq) from the RouteSeq counter.
const (
	FieldChangeSeq     = "n" // the change's number, decimal: consecutive from 1
	FieldChangeUser    = "u" // the user id
	FieldChangeDevice  = "d" // the device id
	FieldChangeGateway = "g" // the gateway that wrote or deleted the route
	FieldChangeRoute   = "r" // the encoded Route written; "" when deleted
)

// RouteChange is one entry of the route change stream (Keys.RouteChanges):
// a gateway wrote a device's route (attach, or a heartbeat that brought a
// dead or missing route back) or deleted it (a clean detach). A deletion
// removes the device's route only if it still names Gateway.
type RouteChange struct {
	// Seq numbers the change: every change gets the next number, so a
	// reader that sees a number that does not follow its last one has
	// missed changes.
	Seq     uint64
	User    domain.UserID
	Device  domain.DeviceID
	Gateway string
	// Route is the route written; the zero Route when Deleted.
	Route   Route
	Deleted bool
}

// ChangeArgs returns the values of the change's fields after the number
// (user, device, gateway, route; "" for a deletion), in field order: the
// arguments of the script that numbers and appends it.
func (c RouteChange) ChangeArgs() []any {
	r := ""
	if !c.Deleted {
		r = c.Route.Encode()
	}
	return []any{string(c.User), string(c.Device), c.Gateway, r}
}

// DecodeRouteChange decodes the fields of a route change entry as a Redis
// client returns them. It fails on a missing or malformed field, and on a
// route that names another gateway than the change.
func DecodeRouteChange(values map[string]any) (RouteChange, error) {
	var c RouteChange
	str := func(f string) (string, bool) { s, ok := values[f].(string); return s, ok }
	n, okN := str(FieldChangeSeq)
	u, okU := str(FieldChangeUser)
	d, okD := str(FieldChangeDevice)
	g, okG := str(FieldChangeGateway)
	r, okR := str(FieldChangeRoute)
	seq, err := strconv.ParseUint(n, 10, 64)
	if !okN || !okU || !okD || !okG || !okR || err != nil || seq == 0 {
		return c, fmt.Errorf("inbox: malformed route change %v", values)
	}
	c.Seq, c.User, c.Device, c.Gateway = seq, domain.UserID(u), domain.DeviceID(d), g
	if !c.User.Valid() || d == "" || !ValidGateway(g) {
		return c, fmt.Errorf("inbox: route change of user %q, device %q, gateway %q", u, d, g)
	}
	if r == "" {
		c.Deleted = true
		return c, nil
	}
	if c.Route, err = DecodeRoute(r); err != nil {
		return c, err
	}
	if c.Route.Gateway != g {
		return c, fmt.Errorf("inbox: route change of gateway %q carries a route of %q", g, c.Route.Gateway)
	}
	return c, nil
}
