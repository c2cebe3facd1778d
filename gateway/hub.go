package gateway

import (
	"context"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
)

// Hub is per-device delivery from users' inboxes (docs/architecture.md, "Delivery"): the
// gateway attaches each authenticated session to it and forwards the
// client's acknowledgements. It is the port the gateway consumes;
// DeliveryHub adapts the real one (*delivery.Hub), and tests may use a fake.
// Implementations are safe for concurrent use.
type Hub interface {
	// Attach starts delivering user's inbox to device through sink, from the
	// device's cursor, until the returned device is detached. sink is called
	// from the hub's goroutines (possibly before Attach returns) and must
	// not block.
	Attach(ctx context.Context, user domain.UserID, device domain.DeviceID, sink Sink) (HubDevice, error)
	// Signal sends an ephemeral signal to every online device of the users.
	Signal(ctx context.Context, toUsers []domain.UserID, s Signal) error
	// Online returns the presence of each of the users.
	Online(ctx context.Context, users []domain.UserID) (map[domain.UserID]Presence, error)
	// DevicePresence returns the presence of each of user's devices that
	// has a presence route, keyed by device id.
	DevicePresence(ctx context.Context, user domain.UserID) (map[domain.DeviceID]Presence, error)
	// End closes the live connections of devices of user on every gateway:
	// their sinks hear why (Endable) and they are detached cleanly.
	End(ctx context.Context, user domain.UserID, devices []domain.DeviceID, why string) error
}

// HubDevice is one attached device.
type HubDevice interface {
	// Ack acknowledges every delivery up to and including inboxID: the
	// device's cursor moves there.
	Ack(ctx context.Context, inboxID string) error
	// Covers reports whether acknowledging inboxID would acknowledge a
	// delivery not acknowledged yet (acknowledgements of those are not
	// rate limited).
	Covers(inboxID string) bool
	// Detach stops delivery to the device. clean is true when the client
	// left on purpose (a close handshake, logout, a drain): the device's
	// presence route is removed at once rather than left to expire.
	Detach(ctx context.Context, clean bool)
}

// The delivery vocabulary is the delivery package's (see its docs).
type (
	// Sink receives what the hub delivers to one device; its methods must
	// not block, and an error makes the hub detach the device.
	Sink = delivery.Sink
	// Delivery is one inbox entry delivered to a device.
	Delivery = delivery.Delivery
	// Signal is an ephemeral message between users (typing).
	Signal = delivery.Signal
	// Presence is a user's online state.
	Presence = delivery.Presence
	// Endable is a Sink whose connection the server may end on purpose.
	Endable = delivery.Endable
	// AckObserver is a Sink that hears how long deliveries waited for
	// their acknowledgement.
	AckObserver = delivery.AckObserver
)

// The signal kinds the gateway sends; the payload is the conversation id.
const (
	SignalTyping        = "typing"
	SignalTypingStopped = "typing_stopped"
)

// DeliveryHub adapts a *delivery.Hub to Hub. The caller runs the hub
// (delivery.Hub.Run) for as long as the gateway serves.
func DeliveryHub(h *delivery.Hub) Hub { return deliveryHub{h} }

type deliveryHub struct{ *delivery.Hub }

func (h deliveryHub) Attach(ctx context.Context, user domain.UserID, device domain.DeviceID, sink Sink) (HubDevice, error) {
	d, err := h.Hub.Attach(ctx, user, device, sink)
	if err != nil {
		return nil, err
	}
	return d, nil
}

var (
	_ Hub       = deliveryHub{}
	_ HubDevice = (*delivery.Device)(nil)
)
