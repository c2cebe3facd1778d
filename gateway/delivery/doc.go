// Package delivery is a gateway's per-device reliable delivery: it pushes
// users' inbox entries (internal/inbox) to their attached devices, keeps the
// devices' presence routes alive and carries ephemeral signals (typing,
// presence changes) between gateways. One Hub serves one gateway process;
// the gateway's sessions attach their devices to it through the Sink
// interface.
//
// # Reading
//
// Every attached device has a read position: the last inbox entry pushed to
// it. Catch-up after attaching and live delivery are one and the same loop:
// a device that may have news is queued, and a small pool of readers
// (Config.Readers) takes queued devices in batches and reads each one's
// inbox after its position (XRANGE, at most PageSize entries, the devices of
// one batch in one pipelined round trip), pushes what it finds in stream
// order and moves the position. A device is read by at most one reader at a
// time, so its pushes are in inbox order and no inbox id is pushed twice in
// one attachment except as a marked resend. Notifications arriving while a
// device is being read (during catch-up, say) only queue it again, so
// entries appended during catch-up are read after it, never skipped or
// reordered (the gim #46 race cannot happen: there is no separate live path
// to race with).
//
// A notification that carries a user's entries (internal/inbox.Head.Prev
// and Entries) is pushed straight to each of the user's devices whose
// position is exactly Prev and that no reader holds (not queued): the
// entries continue the device's position without a gap, so they are pushed
// in order without reading the inbox, up to MaxInFlight. Any other device
// is queued as for a head: the reader fills the gap from its position.
//
// A device is not pushed its own messages: a MessageSent entry whose
// envelope's actor is the device's user and device (read from the
// envelope's actor field without decoding the rest) moves the position
// past it without a push, in catch-up, in reads and from a notification
// alike. Its send's answer carried the event id and seq. Other events a
// device made (edits, recalls, reads) are pushed to it as to any device.
//
// A device is queued when it attaches, when a notification on this
// gateway's channel names its user with an entry after its position (and
// does not carry entries that continue it), when
// its last read filled a page, and when the periodic position check
// (Config.PollInterval) finds its inbox longer than its position: one
// pipelined XRANGE ... COUNT 1 after each idle device's position, so a lost
// notification delays delivery by at most a poll interval and never loses
// it. The subscriber reconnects forever (with backoff) when its Redis
// connection drops, and runs a position check as soon as it has subscribed
// again.
//
// # Acknowledgement
//
// Nothing counts as delivered until the client acknowledges it. A device's
// cursor (the stored position it resumes from, on any gateway) moves only
// on Device.Ack, only forward (a Lua max-compare), and only to an inbox id
// that was pushed to that device and is still unacknowledged; an
// acknowledgement is cumulative. The device's own messages, never pushed
// to it, are the exception: one skipped right after a push is acknowledged
// with that push (the cursor moves through it), one skipped with nothing
// in flight at once, as by an Ack of it. Ack only updates memory: the cursor is
// written at most once per Config.AckInterval (the highest id acknowledged
// in it, every device's in one pipeline) and when the device detaches, so a
// gateway that dies re-delivers at most the last interval's acknowledged
// entries on the device's next attachment. Unacknowledged pushes are kept in memory
// and pushed again, marked Resend, every Config.AckTimeout until
// acknowledged. A device with Config.MaxInFlight unacknowledged pushes is
// not read until acknowledgements halve them. Devices of one user each have
// their own position, cursor and resend set.
//
// # Window
//
// The inbox keeps a bounded window. A device whose cursor is older than the
// window (XINFO STREAM: entries were trimmed and the cursor is before the
// first one left, or XDEL removed one after it), and a device without
// a cursor (new, or expired), gets Sink.SyncRequired before any push: the
// client syncs history from the read model by conversation seq. A device
// with a cursor then continues from the oldest entry in the inbox; a device
// without one starts at the inbox's end. A read after a full page or after
// attaching checks the window again (XINFO after the XRANGE, in the same
// round trip), so a device that falls behind the window during its session
// is told too: entries are never skipped silently.
//
// # Presence
//
// Attach writes the device's route (inbox.Route, deadline now +
// inbox.RouteTTL) before reading anything, so every entry appended later is
// either read by the catch-up or announced to this gateway. Routes are
// rewritten every Config.RouteRefresh; a heartbeat leaves alone a live route
// another gateway took (the device reconnected there). A clean detach
// deletes the route if it still names this gateway; an unclean one leaves it
// to reach its deadline. Every detach records the user's last-seen time.
// Routes only speed delivery up: delivery never depends on them.
//
// # Signals
//
// Hub.Signal publishes an ephemeral signal once to each gateway where a
// recipient has a live route (handing it over directly when that is this
// gateway); the receiving gateway gives it to every attached device of the
// recipients. Signals are fire-and-forget: never stored, never repaired.
//
// # Concurrency
//
// All methods of Hub and Device are safe for concurrent use. A device's Sink
// is never called concurrently with itself, and never while the hub holds a
// lock other than the device's own; a Sink must not call back into its
// Device or the Hub from Push, Signal or SyncRequired. Hub.Run must be
// running for anything to be pushed or signalled in.
package delivery
