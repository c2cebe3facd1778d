package delivery

import (
	"context"
	"slices"
	"strings"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/inbox"
)

// Endable is implemented by sinks whose connection the server may end on
// purpose (the device was logged out, its password changed elsewhere):
// Ended is called once, without the hub's locks held, with why; the sink
// closes its connection and the device receives nothing more. It must not
// block.
type Endable interface {
	Ended(reason string)
}

// kindEnded is the reserved signal kind that tells a gateway to end its
// attachments of some devices of a user: From is the reason, the payload
// the device ids, one per line.
const kindEnded = "!ended"

// maxEndReasonBytes bounds the reason given to End.
const maxEndReasonBytes = 100

// End ends every attachment of devices of user, on this gateway and on
// every gateway where one of them has a live route (one publish per
// gateway, through its signal channel): each attachment's sink hears of it
// (Endable) and the device is detached cleanly, its route removed. A device
// attached nowhere is left alone. reason is told to the sinks; it must be
// printable and short, without newlines.
//
// It fails with a domain EInvalid error for a malformed user id, device
// id or reason, and EUnavailable when Redis fails (the attachments on this
// gateway are ended all the same).
func (h *Hub) End(ctx context.Context, user domain.UserID, devices []domain.DeviceID, reason string) error {
	if !user.Valid() {
		return domain.Errorf(domain.EInvalid, "delivery: invalid user id %q", user)
	}
	if reason == "" || len(reason) > maxEndReasonBytes || strings.ContainsRune(reason, '\n') {
		return domain.Errorf(domain.EInvalid, "delivery: end reason %q: it must be set, one line, at most %d bytes", reason, maxEndReasonBytes)
	}
	for _, d := range devices {
		if d == "" || strings.ContainsAny(string(d), "\n ") {
			return domain.Errorf(domain.EInvalid, "delivery: invalid device id %q", d)
		}
	}
	if len(devices) == 0 {
		return nil
	}
	h.endedHere(user, devices, reason)
	routes, err := h.rdb.HGetAll(ctx, h.keys.Presence(user)).Result()
	if err != nil {
		return unavailable("reading presence to end sessions", err)
	}
	now := h.cfg.Now()
	byGateway := make(map[string][]domain.DeviceID)
	for _, d := range devices {
		r, err := inbox.DecodeRoute(routes[string(d)])
		if err != nil || !r.Live(now) || r.Gateway == h.cfg.GatewayID {
			continue
		}
		byGateway[r.Gateway] = append(byGateway[r.Gateway], d)
	}
	if len(byGateway) == 0 {
		return nil
	}
	_, err = publishSignals(ctx, h, byGateway, func(ds []domain.DeviceID) []byte {
		return encodeSignal([]domain.UserID{user}, Signal{From: reason, Kind: kindEnded, Payload: joinDevices(ds)})
	})
	if err != nil {
		h.m.redisErrors.WithLabelValues("end").Inc()
		return unavailable("publishing the end of sessions", err)
	}
	return nil
}

// endedHere ends this hub's attachments of devices of user: each sink
// hears why, then the device is detached cleanly.
func (h *Hub) endedHere(user domain.UserID, devices []domain.DeviceID, reason string) {
	for _, d := range h.devicesOf(user) {
		if !slices.Contains(devices, d.id) {
			continue
		}
		if e, ok := d.sink.(Endable); ok {
			e.Ended(reason)
		}
		h.detach(context.Background(), d, true)
	}
}

// joinDevices returns the payload of a kindEnded signal: the device ids, one
// per line.
func joinDevices(devices []domain.DeviceID) []byte {
	var b []byte
	for i, d := range devices {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, d...)
	}
	return b
}

// receiveEnded handles a kindEnded signal from another gateway.
func (h *Hub) receiveEnded(users []domain.UserID, s Signal) {
	var devices []domain.DeviceID
	for d := range strings.SplitSeq(string(s.Payload), "\n") {
		devices = append(devices, domain.DeviceID(d))
	}
	for _, u := range users {
		h.endedHere(u, devices, s.From)
	}
}

// DevicePresence returns the presence of each device of user that has a
// route (keyed by device id): online while its route is live, else last
// seen at its route's last heartbeat. A device that left cleanly has no
// route and is not in the map. It fails with a domain EInvalid error for a
// malformed user id and EUnavailable when Redis fails.
func (h *Hub) DevicePresence(ctx context.Context, user domain.UserID) (map[domain.DeviceID]Presence, error) {
	if !user.Valid() {
		return nil, domain.Errorf(domain.EInvalid, "delivery: invalid user id %q", user)
	}
	routes, err := h.rdb.HGetAll(ctx, h.keys.Presence(user)).Result()
	if err != nil {
		return nil, unavailable("reading presence", err)
	}
	now := h.cfg.Now()
	out := make(map[domain.DeviceID]Presence, len(routes))
	for f, v := range routes {
		d := domain.DeviceID(f)
		r, err := inbox.DecodeRoute(v)
		if err != nil {
			continue
		}
		if r.Live(now) {
			out[d] = Presence{Online: true, LastSeen: now}
		} else {
			out[d] = Presence{LastSeen: r.Expires.Add(-inbox.RouteTTL)}
		}
	}
	return out, nil
}
