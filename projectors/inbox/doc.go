// Package inbox is the inbox projector (name "inbox"): write fan-out of the
// event log into users' inbox streams, and notification of the gateways
// where the recipients are online. The key layout and value formats it
// shares with the gateway live in internal/inbox.
//
// # Audience
//
// For each event, one entry goes to the inbox of every user that must
// receive it, each user once:
//
//   - MessageSent, MessageRecalled, MessageEdited: every member of the
//     conversation, the sender included (so the sender's other devices get
//     it): both users of a direct conversation; the members of a group at
//     that point of the log. A member who was kicked or left gets nothing
//     after the event that removed them; a recall or edit reaches only the
//     members whose membership began before the message (a member who
//     joined while the group's history was visible began at seq 0).
//   - ConversationRead: the reader (their other devices sync the marker) and,
//     in a direct conversation, the other user (the read receipt). In a group
//     only the reader: the event lives in the reader's partition, not the
//     group's, so the projector cannot know the members at that point
//     without a cross-partition read, and announcing every member's reads to
//     every member costs O(members) entries per read, more than the message
//     fan-out itself. Group read counts, if wanted, come from the MySQL read
//     model on demand.
//   - MessageDeletedForMe: the user (their other devices hide the message).
//   - FriendRequested, FriendRequestAccepted, FriendRequestDeclined,
//     FriendRemoved: both users.
//   - UserBlocked, UserUnblocked: the blocker only; a block is not announced
//     to the blocked user (whose friend list loses the blocker, which they
//     see when they next list friends).
//   - GroupCreated, MemberAdded, MemberJoined, MemberLeft, MemberKicked,
//     MemberRoleChanged, GroupRenamed, MemberMuted, MemberUnmuted, MemberUnbanned,
//     GroupHistoryVisibilityChanged, GroupDissolved: the members before and after the event together (so a
//     joiner gets their join and a kicked or leaving user their removal) and
//     the user the event is about.
//   - ProfileUpdated: the user's own devices.
//
// Other events (registration, username claims, passwords, device sessions)
// reach no inbox.
//
// # Group membership
//
// The members of each group are kept in Redis by this projector, from the
// group's events, in a set per group under the partition's hash tag (a
// group's events and messages share its partition, so the set is always the
// membership at the partition's checkpoint), beside a hash per group of its
// history state: the conversation's last seq, whether the history is visible
// to new members, and the seq each member's membership began at. A batch
// reads the sets and hashes it needs together with its fencing check, moves
// them through the batch in memory and writes the net changes together with
// the checkpoint, in one script: the membership is exactly-once even though
// inbox entries are not. The sets and hashes are rebuilt by replaying the log
// from zero (after deleting the projector's keys and inboxes); a member set
// written before the hashes existed reads as members since seq 0.
//
// # Delivery guarantees
//
// A batch is applied in three round trips: (1) the fencing check and the
// membership read; (2) all inbox appends (XADD trimmed to about Window
// entries, and one INCRBY of each inbox's byte count by what the batch adds
// to it), quarantine records and the read of the route changes since the
// last batch, in one MULTI/EXEC that first reads the last inbox id (the
// Prev its notification carries; XREVRANGE COUNT 1) of each recipient whose
// Prev it cannot prove, then the presence reads (HGETALL) of the
// recipients the route cache does not know;
// (on a Redis Cluster, which runs no transaction across slots, one
// append.lua call per recipient inbox doing that inbox's read, appends and
// count, all calls in one pipeline the client splits by master, then the
// route and presence reads and the quarantine records in one pipeline: see
// write.go);
// (3) the checkpoint compare-and-set with the membership changes,
// and at most one PUBLISH per gateway, in one pipeline. Between (2) and (3),
// an inbox whose byte count passed QuotaBytes is trimmed to three quarters
// of it by quota.lua (one call per such inbox, rare: once per quarter of the
// quota written to it). A batch fenced
// (ErrFenced) or behind a moved checkpoint (ErrCheckpointMoved) at (1) writes
// nothing.
//
// Inbox writes are at least once: a crash or error after (2) and before (3)
// makes the runner apply the batch again, and its entries appear again, with
// the same event ids, later in the same inboxes. Every entry carries its
// event id (internal/inbox.Entry.EventID); the gateway and clients
// de-duplicate on it, after which the timeline is the same. An owner that
// lost its partition while between (1) and (3) may likewise write duplicate
// entries; its commit then fails with ErrFenced.
//
// Notifications are hints, published after the entries exist: at most one
// per gateway per batch, naming the recipients with a live presence route on
// that gateway (internal/inbox.Route; the projector only reads routes) and
// carrying their entries of the batch while the payload stays within
// Config.NotifyBytes (heads only for the users past it).
// Offline users get only the inbox entry.
//
// # Prev without a read
//
// The projector remembers the last id it appended to each recent
// recipient's inbox (as many users as RouteCacheEntries, random eviction).
// A recipient with exactly one entry in the batch and a remembered id no
// more than ten seconds old gets its entry appended with the explicit id
// right after that one, NOMKSTREAM, instead of "*" after an XREVRANGE:
// Redis accepts an explicit id only above the stream's last id, so an
// accepted append proves that the remembered id was the inbox's last, and
// is the Prev of the notification. A refused one (an entry appended
// since, by another partition's batch or another process, or the inbox
// deleted) writes nothing; the batch appends those entries again in one
// more MULTI/EXEC, after an XREVRANGE each (its byte count already
// includes them). A remembered id is taken out while its claim is in
// flight, so two batches never claim the same one, and only the process
// that appended an entry remembers its id. A user with several entries is
// never claimed: a refused claim must leave nothing written, and in a
// transaction only a single XADD is refused whole. Metrics:
// mpim_inbox_prev_claims_total, mpim_inbox_prev_claims_refused_total.
//
// # Route cache
//
// The routes of recent recipients (offline ones included) are cached in
// memory, bounded by Config.RouteCacheEntries and RouteCacheBytes (random
// eviction), and kept fresh by the gateways' route change stream
// (internal/inbox: Route changes), which every batch reads after its inbox
// appends in the same pipeline: a route written before an entry was appended
// is applied before the batch picks the gateways to notify. A recipient is
// looked up (HGETALL) instead when it is not cached, when a cached route
// reached its deadline or the entry is older than internal/inbox.RouteTTL
// (heartbeats are not announced), and, in one more round trip, when the
// change read failed or returned its bound (1024). A gap in the change
// numbers empties the cache. A looked-up entry is cached only if no change
// after those the lookup is known to see was applied meanwhile. Lost or
// missed changes therefore cost lookups, never deliveries: and a missed
// notification is still repaired by the gateways' position checks.
//
// # Large groups
//
// Only write fan-out is built: O(members) entries per group message.
// Config.ReadFanoutThreshold reserves the group size above which a group
// would switch to read fan-out (members' gateways read the group's
// conversation directly); it is not used yet.
//
// # Quarantine
//
// Entries the runner could not decode (Batch.Skipped) and envelopes the codec
// rejects are recorded in the capped stream <prefix>quarantine:inbox (fields
// partition, position, reason, raw) and the checkpoint moves past them.
package inbox
