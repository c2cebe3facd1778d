// Package push is the push projector: for each event a user must hear of
// while offline (a message, a friend request, being added to a group) it
// tells the user's devices that have a push token and no live route,
// through a webhook.Sender (docs/push.md).
//
// For every recipient other than the actor, the projector reads, from the
// cache read model through a Directory, the user's push targets and whether
// the conversation is muted, and from the presence hash (internal/inbox)
// which devices hold a live route: a device with one gets nothing (the
// inbox projector delivers to it), a muted conversation gets nothing, and
// a user with no device left gets nothing. The others become one
// webhook.Notification each, submitted per batch.
//
// The reads are made for a whole batch at once, one pipeline per kind and
// each narrowing the next: the members of the batch's groups, every
// recipient's push targets (a user without a token is done with there),
// the presence of those with targets, the mutes of those left with a
// device to push to, and the names of the senders of events that tell
// someone. A batch takes at most five round trips of lookups, whatever
// its events and recipients (a few more beyond thousands of keys of one
// kind: internal/pipeline); a batch of direct messages to users without
// a token takes one, and then a single checkpoint script (Apply). On a
// Redis Cluster, go-redis splits each pipeline by node. The runner lets a
// partition's events gather for Config.Linger (50ms) before it applies a
// batch that is not full, so that under load these costs are shared by
// many events.
//
// Unlike the read models it is not deterministic or rebuildable: presence
// and the clock decide. What it keeps is at least once: the stored
// checkpoint only ever passes a batch once the sender reports it settled
// (every call carrying its notifications delivered or dead-lettered), so a
// crash re-reads and re-sends, never loses. A repeated notification carries
// the same event id, the idempotency key of its call when it is the latest
// of it.
//
// Applying is pipelined, since the sender holds a user's first
// notification for the collapse window: Apply checks the fencing token
// against the stored checkpoint, submits the batch's notifications and
// returns, leaving the batch pending (a batch with no notification skips
// the check: the checkpoint write that passes it checks the token too). A goroutine per partition, running
// while batches are pending, waits for the oldest to settle and moves the
// stored checkpoint past it and every later one settled by then (a batch
// that told nobody is settled with those before it), in log order, with
// redisckpt's compare-and-set and fencing. So one window holds many
// batches, not one. Config.MaxPending bounds the pending batches of a
// partition; Apply waits for room beyond it. A failure of that goroutine
// (fenced, the checkpoint moved, a write refused) is returned by the next
// Apply, wrapping projectors.ErrFenced or projectors.ErrCheckpointMoved;
// Claim drops the partition's pending batches and resumes from the stored
// checkpoint, so they are applied, and their calls made, again. Checkpoint
// reads the stored checkpoint: the trim keeps every entry of a pending
// batch in the log.
//
// Checkpoints and fencing are redisckpt's, under the name "push". A
// projector that starts on a partition it never processed begins at the
// partition's last entry when Config.Start is StartHead (the default), so
// that a new deployment of the webhook on an old log never sends what was
// sent long ago; StartZero begins at the first entry. Nothing else ever
// writes these checkpoints: a replay or reset of another read model does
// not touch them.
//
// The directory is read as it stands when the batch is applied: the cache
// projector may trail (a token registered a moment ago, a member added a
// moment ago may be missed).
//
// The unread badge of a notification is the user's unread messages after
// its event: one read of the MySQL read model per notified user and batch
// (Directory.Unread: the sum over the user's conversations and the rows of
// the conversations in the batch), to which the batch's own events are
// added in log order: its messages to the user raise a conversation's last
// seq, the user's read markers and own messages raise the read seq. The
// MySQL projector may trail this one, so a conversation counts the messages
// after the highest read marker known, and never fewer than the batch's
// messages after the batch's own read markers: a badge is never below what
// its push announces. What the read model misses of other partitions'
// batches is not counted. A read that fails does not hold the batch back:
// the user's notifications go without a badge (nil), which is logged and
// counted (mpim_push_badge_failures_total).
package push
