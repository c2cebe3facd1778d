// Package inbox is the delivery contract between the inbox projector
// (projectors/inbox), which writes users' inboxes, and the gateway, which
// reads them and pushes to devices. It names every shared Redis key and
// encodes every shared value; both sides import it and neither imports the
// other. It is written once here and never duplicated.
//
// # Keys
//
// All keys start with the deployment's prefix (the event store's Prefix).
// Everything that belongs to one user shares the hash tag "{<user>}" (the
// user id, "u/<ulid>"), so a multi-key script over one user's keys is valid
// on Redis Cluster.
//
//	<prefix>inbox:{<user>}                   stream: the user's inbox (Keys.Inbox)
//	<prefix>inbox:{<user>}:bytes             string: the inbox's byte count (Keys.InboxBytes)
//	<prefix>inbox:{<user>}:cursor:<device>   string: a device's cursor (Keys.Cursor)
//	<prefix>presence:{<user>}                hash: device -> Route (Keys.Presence)
//	<prefix>notify:{<gateway>}               pub/sub channel of one gateway (Keys.Notify)
//	<prefix>lastseen:{<user>}                string: when the user was last seen (Keys.LastSeen)
//	<prefix>signal:{<gateway>}               pub/sub channel of ephemeral signals (Keys.Signal)
//
// Inbox. Written only by the inbox projector: one XADD per event the user
// must receive (see projectors/inbox for who receives what), with the fields
// of Entry, trimmed to about the window of entries (MAXLEN ~), and beside it
// an INCRBY of the inbox's byte count by the entries' bytes (the lengths of
// its field names and values: mostly the event's envelope, a copy of the
// log's). When the count passes the byte quota, the projector trims the
// inbox from its oldest entries down to three quarters of the quota (never
// the newest entry) and sets the count to the bytes kept; the count never
// subtracts what the window trims, so it only over-estimates, and each quota
// trim corrects it. Beyond the quota entries are trimmed, never refused: the
// log keeps every event and a device that falls behind syncs history by
// conversation seq, as below. So a user's inbox holds at most the window of
// entries and at most the quota of bytes plus one projector batch (or one
// entry, if that alone is larger), whatever one group sends. Read by the
// gateway:
// XRANGE from a device's cursor for catch-up, and after each notification.
// Stream entry ids are Redis-assigned and are the user's timeline positions;
// they increase in append order. No TTL. Entries are at least once: a retry
// of the projector after a crash may append an event again, with the same
// event id (Entry.EventID), later in the stream; the gateway and clients
// de-duplicate by event id. Entries of one conversation, and all entries
// coming from one log partition, are in log order; entries from different
// partitions interleave in projection order.
//
// A device whose cursor is older than the window has lost entries: the
// gateway detects it with XINFO STREAM (entries-added greater than length,
// so entries were trimmed, and the cursor before the first entry left) and
// tells the client to sync history by conversation seq instead. Trimming
// does not move max-deleted-entry-id (Redis 7.0 moves it on XDEL only), so
// that field alone never shows a trimmed window.
//
// Cursor. Written only by the gateway when a device acknowledges entries:
// the id of the last inbox entry the device acknowledged, moved forward only
// (stream ids compare as "<ms>-<seq>" pairs), with a TTL of CursorTTL
// refreshed on every write. Read by the gateway on connect or resume, on any
// gateway. A device without a cursor (new, or expired) is treated as new:
// it syncs history by conversation seq and starts at the inbox's end.
//
// Presence. Written only by the gateway: HSET <device> to the encoded Route
// (gateway id and expiry) when a device connects and on every heartbeat,
// PEXPIRE of the whole hash to RouteTTL at the same time, HDEL on a clean
// disconnect (only of a route naming that gateway: a device that reconnected
// elsewhere keeps its newer route). Redis 7.0 has no per-field expiry, so a
// route carries its own deadline: a route past its deadline is dead (its
// gateway stopped heartbeating) and readers ignore it; the gateway may HDEL
// dead fields. The key itself expires RouteTTL after the last heartbeat of
// any of the user's devices. Read by the inbox projector (HGETALL per
// recipient per batch, to pick the gateways to notify) and by the gateway (a
// friend's presence).
//
// Notify. Published only by the inbox projector, after the batch's inbox
// entries were written: at most one Notification per gateway per batch,
// listing the users with new entries who have a live route on that gateway.
// Subscribed by that gateway only. Pub/sub is fire-and-forget: a gateway
// repairs a lost notification with a periodic position check of its
// connected users' inboxes (XINFO or XREVRANGE COUNT 1 against what it
// pushed), never by luck. On Redis Cluster the channel name carries the
// gateway's hash tag so SPUBLISH/SSUBSCRIBE can be used with the same name.
// Offline users (no live route) get only the inbox entry.
//
// Last seen. Written only by the gateway when a device detaches: the Unix
// milliseconds of the detach, decimal, moved forward only, with a TTL of the
// gateway's choosing. Read by the gateway to answer presence queries; a user
// with a live route is online whatever it says.
//
// Signal. Published and subscribed only by gateways (gateway/delivery owns
// the payload format): ephemeral signals (typing, presence changes) that are
// not events and are never stored. A gateway publishes at most one message
// per receiving gateway per signal, to the gateways named by the recipients'
// live routes. Lost signals are not repaired.
package inbox
