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
//	<prefix>{routes}:changes                 stream: numbered route changes (Keys.RouteChanges)
//	<prefix>{routes}:seq                     string: the last route change's number (Keys.RouteSeq)
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
// XRANGE from a device's cursor for catch-up, after a notification that
// does not carry the entries a device needs next, after a full page and in
// the position check. The projector appends a batch's entries in one
// MULTI/EXEC (on a Redis Cluster, one per recipient's inbox), so a user's entries of one batch are contiguous in the inbox,
// and knows the id of the entry just before the first (Head.Prev): either
// read in the same transaction (XREVRANGE COUNT 1 before the appends) or,
// for a user with a single entry in the batch, proven: the entry is added
// with the explicit id right after the last id the projector appended
// there (XADD NOMKSTREAM <ms>-<seq+1>), which Redis accepts only if that
// id is still the stream's last; a refused one writes nothing and is
// appended again after a read.
// Stream entry ids are the user's timeline positions; they increase in
// append order. They are Redis-assigned ("*") or, for a proven entry, the
// id right after the previous one, so they follow the clock only loosely
// (the projector lets them fall at most about ten seconds behind it); no
// reader may take an inbox id for a time. No TTL. Entries are at least once: a retry
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
// Cursor. Written only by the gateway, from the device's acknowledgements:
// the id of the last inbox entry the device acknowledged, moved forward only
// (stream ids compare as "<ms>-<seq>" pairs), with a TTL of CursorTTL
// refreshed on every write. Acknowledgements are cumulative and cheap: the
// gateway keeps them in memory and writes each device's cursor at most once
// per ack interval (the highest id acknowledged in it; gateway/delivery
// Config.AckInterval, default 500 ms, at most 5 s) and always when the
// device detaches. The cursor is a resume hint under at-least-once delivery:
// a gateway that dies loses at most the last interval's acknowledgements,
// and the device, on its next connection, is pushed those entries again
// (with the unacknowledged ones), which clients de-duplicate by event id.
// The same happens when a device reconnects, to another gateway or to the
// same one before its old connection's detach stored the cursor, faster
// than the interval: a later connection may be pushed again entries an
// earlier one acknowledged, never one it acknowledged itself.
// Entries a device skips count as acknowledged with what precedes them:
// the gateway never pushes a device a MessageSent whose actor is that
// same user and device (the send's answer gave the device its copy), live
// or in catch-up, and moves the device's position past it; such an entry
// behind an unacknowledged push is acknowledged with that push, and one
// with nothing in flight is acknowledged as it is read, so the cursor of a
// device that only sends still moves past its own messages.
// Read by the gateway on connect or resume, on any gateway. A device
// without a cursor (new, or expired) is treated as new: it syncs history by
// conversation seq and starts at the inbox's end. Its first
// acknowledgement is written at once (not at the next interval), so a
// gateway that dies right after it does not make the device new again,
// past the entries that arrived meanwhile.
//
// Presence. Written only by the gateway: HSET <device> to the encoded Route
// (gateway id and expiry) when a device connects and on every heartbeat,
// PEXPIRE of the whole hash to RouteTTL at the same time, HDEL on a clean
// disconnect (only of a route naming that gateway: a device that reconnected
// elsewhere keeps its newer route). Redis 7.0 has no per-field expiry, so a
// route carries its own deadline: a route past its deadline is dead (its
// gateway stopped heartbeating) and readers ignore it; the gateway may HDEL
// dead fields. The key itself expires RouteTTL after the last heartbeat of
// any of the user's devices. Read by the inbox projector (HGETALL of a
// recipient its route cache does not know, see Route changes) and by the
// gateway (a friend's presence).
//
// Route changes. Appended only by the gateway, so that the inbox projector
// can cache routes instead of reading every recipient's presence every
// batch: on attach, on a heartbeat that wrote a route where there was none
// or a dead one, and on a clean detach that deleted a route, one script
// (one hash tag) INCRs the counter and XADDs a RouteChange numbered by it
// (fields n, u, d, g, r) to the stream, capped at about RouteChangesLen
// entries (MAXLEN ~). A heartbeat over the gateway's own live route
// appends nothing: the cache trusts a route only until its deadline. The
// change goes in the pipeline of the route write, after it, and on attach
// before any read of the inbox or cursor. A change may be appended twice
// (a pipeline run again); applying it twice is applying it once. A
// deletion deletes the device's route only if it names the change's
// gateway. Read only by the inbox projector: every batch with recipients
// reads the changes after the last one it applied (XRANGE exclusive,
// bounded), in the pipeline of its inbox writes and after them, so every
// route written before an entry was appended is known when the gateways to
// notify are picked: a device attached before the append reads the entry in
// its catch-up, or its gateway is notified. A number that does not follow
// the last one applied (changes trimmed unread, the counter reset) empties
// the cache; a read that fails or is cut short makes the batch look its
// cached recipients up (HGETALL). No TTL.
//
// Notify. Published only by the inbox projector, after the batch's inbox
// entries were written: at most one Notification per gateway per batch,
// listing the users with new entries who have a live route on that gateway:
// each user's last new entry and, while the payload stays within the
// projector's NotifyBytes (at most MaxNotificationBytes), the user's entries
// of the batch themselves (inbox id and fields, in inbox order) with Prev,
// the id of the entry before the first of them; past the bound, users get
// their head only. Subscribed by that gateway only. A gateway pushes carried
// entries to a device only if the device was given exactly up to Prev (so
// they continue it without a gap); every other device reads its inbox from
// its position, as for a head. Pub/sub is fire-and-forget: a gateway
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
