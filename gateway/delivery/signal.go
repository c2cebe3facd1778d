package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/redis/go-redis/v9"
)

// Signal is an ephemeral signal (typing, presence change): never stored,
// delivered at most once to devices attached when it arrives.
type Signal struct {
	// From is who the signal is about or from (a user id, say); no newline.
	From string
	// Kind says what the signal is ("typing"); not empty, no newline.
	Kind string
	// Payload is opaque to delivery.
	Payload []byte
}

// Signal sends s to every attached device of toUsers, on every gateway: it
// reads the recipients' presence routes (one pipeline) and publishes one
// message to each other gateway where a recipient has a live route, listing
// the recipients there; recipients attached to this gateway get it
// directly. Offline users get nothing. It fails with a domain EInvalid
// error for a malformed user id or signal, and EUnavailable when Redis
// fails (publishes that succeeded stay published).
func (h *Hub) Signal(ctx context.Context, toUsers []domain.UserID, s Signal) error {
	if s.Kind == "" || strings.HasPrefix(s.Kind, "!") || strings.ContainsRune(s.Kind, '\n') || strings.ContainsRune(s.From, '\n') {
		return domain.Errorf(domain.EInvalid, "delivery: signal kind %q from %q: kind must be set and not start with '!' (reserved), neither may hold a newline", s.Kind, s.From)
	}
	users, err := userIDs(toUsers)
	if err != nil || len(users) == 0 {
		return err
	}
	routes := make([]*redis.MapStringStringCmd, len(users))
	err = h.pipeline(ctx, func(p redis.Pipeliner) {
		for i, u := range users {
			routes[i] = p.HGetAll(ctx, h.keys.Presence(u))
		}
	})
	if err != nil {
		return unavailable("reading presence for a signal", err)
	}
	now := h.cfg.Now()
	byGateway := make(map[string][]domain.UserID)
	for i, u := range users {
		if err := routes[i].Err(); err != nil {
			return unavailable("reading presence for a signal", err)
		}
		var gateways []string
		for _, v := range routes[i].Val() {
			r, err := inbox.DecodeRoute(v)
			if err != nil || !r.Live(now) || slices.Contains(gateways, r.Gateway) {
				continue
			}
			gateways = append(gateways, r.Gateway)
			byGateway[r.Gateway] = append(byGateway[r.Gateway], u)
		}
	}
	if local, ok := byGateway[h.cfg.GatewayID]; ok {
		delete(byGateway, h.cfg.GatewayID)
		h.m.signalsIn.Inc()
		h.deliverSignal(ctx, local, s)
	}
	if len(byGateway) == 0 {
		return nil
	}
	published, err := publishSignals(ctx, h, byGateway, func(us []domain.UserID) []byte { return encodeSignal(us, s) })
	h.m.signalsOut.Add(float64(published))
	if err != nil {
		return unavailable("publishing a signal", err)
	}
	return nil
}

// publishSignals publishes, in one pipeline, the payload of each entry of
// byGateway to that gateway's signal channel. It returns how many were
// published and the errors of the others, joined.
func publishSignals[V any](ctx context.Context, h *Hub, byGateway map[string]V, payload func(V) []byte) (int, error) {
	pubs := make(map[string]*redis.IntCmd, len(byGateway))
	err := h.pipeline(ctx, func(p redis.Pipeliner) {
		for gw, v := range byGateway {
			pubs[gw] = h.channels.Publish(ctx, p, h.keys.Signal(gw), payload(v))
		}
	})
	errs := []error{err}
	published := 0
	for gw, c := range pubs {
		if err := c.Err(); err != nil {
			errs = append(errs, fmt.Errorf("to gateway %s: %w", gw, err))
			continue
		}
		published++
	}
	return published, errors.Join(errs...)
}

// kindReplaced is the reserved signal kind that tells a gateway that one of
// its devices (From) attached to another gateway: the older attachment
// here lets it go, as a re-attach on the same hub does.
const kindReplaced = "!replaced"

// replaceElsewhere tells gateway, which held d's live route until d
// attached here, to let its attachment of the device go. A failure is only
// logged: the old attachment then lives until its connection ends, and its
// route heartbeat leaves the new route alone.
func (h *Hub) replaceElsewhere(ctx context.Context, gateway string, d *Device) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	payload := encodeSignal([]domain.UserID{d.user}, Signal{From: string(d.id), Kind: kindReplaced})
	if err := h.channels.Publish(ctx, h.rdb, h.keys.Signal(gateway), payload).Err(); err != nil {
		h.m.redisErrors.WithLabelValues("replace").Inc()
		h.log.Warn("could not tell the device's previous gateway to let it go", "user", d.user, "device", d.id, "gateway", gateway, "err", err)
	}
}

// receiveSignal delivers a signal message from this gateway's channel.
func (h *Hub) receiveSignal(payload []byte) {
	h.m.signalsIn.Inc()
	users, s, err := decodeSignal(payload)
	if err != nil {
		h.m.badNotes.Inc()
		h.log.Warn("ignoring a malformed signal", "err", err)
		return
	}
	switch s.Kind {
	case kindReplaced:
		h.replacedElsewhere(users, domain.DeviceID(s.From))
		return
	case kindEnded:
		h.receiveEnded(users, s)
		return
	}
	h.deliverSignal(context.Background(), users, s)
}

// replacedElsewhere lets go of device of users, which attached to another
// gateway: its sink hears of it (Replaceable) and it is detached without
// touching the route, which is the other gateway's now.
//
// A signal can come late: the device attached here, then on another
// gateway, then here again before that gateway's signal arrived. The
// device's route then names this gateway again and the attachment here is
// newer than the signal, so it stays (routeHere). Only attachments whose
// route write had completed are let go: one still attaching writes its
// route after the sender's, which the signal came after, so it is newer.
// When the route cannot be read the attachments stay, as when the signal
// is lost: they live until their connections end.
func (h *Hub) replacedElsewhere(users []domain.UserID, device domain.DeviceID) {
	for _, u := range users {
		var olds []*Device
		for _, d := range h.devicesOf(u) {
			d.mu.Lock()
			if d.id == device && d.routed && !d.detached {
				olds = append(olds, d)
			}
			d.mu.Unlock()
		}
		if len(olds) == 0 {
			continue
		}
		here, err := h.routeHere(u, device)
		if err != nil {
			h.m.redisErrors.WithLabelValues("replace").Inc()
			h.log.Warn("could not read the route of a device another gateway took over; keeping its attachment here",
				"user", u, "device", device, "err", err)
			continue
		}
		if here {
			h.log.Info("ignoring a late takeover signal: the device attached here again since", "user", u, "device", device)
			continue
		}
		for _, d := range olds {
			d.mu.Lock()
			d.replaced = true
			d.mu.Unlock()
			if r, ok := d.sink.(Replaceable); ok {
				r.Replaced()
			}
			h.detach(context.Background(), d, false)
		}
	}
}

// routeHere reports whether device's presence route names this gateway.
func (h *Hub) routeHere(user domain.UserID, device domain.DeviceID) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), signalReadTimeout)
	defer cancel()
	v, err := h.rdb.HGet(ctx, h.keys.Presence(user), string(device)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r, err := inbox.DecodeRoute(v)
	return err == nil && r.Gateway == h.cfg.GatewayID, nil
}

// signalReadTimeout bounds the route read of a takeover signal, which
// holds up the gateway's channel messages meanwhile.
const signalReadTimeout = time.Second

// deliverSignal gives s to every attached device of users.
func (h *Hub) deliverSignal(ctx context.Context, users []domain.UserID, s Signal) {
	var failed []*Device
	for _, u := range users {
		for _, d := range h.devicesOf(u) {
			d.mu.Lock()
			if !d.detached && d.sink.Signal(s) != nil {
				failed = append(failed, d)
			}
			d.mu.Unlock()
		}
	}
	for _, d := range failed {
		h.m.sinkFailures.Inc()
		h.log.Info("detaching a device whose connection refused a signal", "user", d.user, "device", d.id)
		h.detach(ctx, d, false)
	}
}

// encodeSignal returns the payload of a signal message, a format only
// gateways share: the recipients separated by spaces, From, Kind, each
// ended by '\n', then the payload.
func encodeSignal(users []domain.UserID, s Signal) []byte {
	size := len(s.From) + len(s.Kind) + len(s.Payload) + 3
	for _, u := range users {
		size += len(u) + 1
	}
	b := make([]byte, 0, size)
	for i, u := range users {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, u...)
	}
	b = append(b, '\n')
	b = append(b, s.From...)
	b = append(b, '\n')
	b = append(b, s.Kind...)
	b = append(b, '\n')
	return append(b, s.Payload...)
}

// decodeSignal parses a payload made by encodeSignal.
func decodeSignal(b []byte) ([]domain.UserID, Signal, error) {
	var s Signal
	line := func() (string, bool) {
		l, rest, ok := bytes.Cut(b, []byte{'\n'})
		b = rest
		return string(l), ok
	}
	to, ok1 := line()
	from, ok2 := line()
	kind, ok3 := line()
	if !ok1 || !ok2 || !ok3 || to == "" || kind == "" {
		return nil, s, errors.New("delivery: signal payload lacks its header")
	}
	var users []domain.UserID
	for u := range strings.SplitSeq(to, " ") {
		if !domain.UserID(u).Valid() {
			return nil, s, fmt.Errorf("delivery: signal for malformed user %q", u)
		}
		users = append(users, domain.UserID(u))
	}
	s.From, s.Kind, s.Payload = from, kind, bytes.Clone(b)
	return users, s, nil
}

// userIDs validates and de-duplicates user ids, keeping their order. It
// returns users itself when it holds no duplicate, else a new slice.
func userIDs(users []domain.UserID) ([]domain.UserID, error) {
	dups := false
	for i, u := range users {
		if !u.Valid() {
			return nil, domain.Errorf(domain.EInvalid, "delivery: invalid user id %q", u)
		}
		dups = dups || slices.Contains(users[:i], u)
	}
	if !dups {
		return users, nil
	}
	out := make([]domain.UserID, 0, len(users))
	for _, u := range users {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// unavailable wraps a Redis failure as a domain EUnavailable error.
func unavailable(what string, err error) error {
	return domain.Errorf(domain.EUnavailable, "delivery: %s: %w", what, err)
}
