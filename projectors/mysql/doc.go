// Package mysql holds mpim's MySQL projectors: the read model ("mysql",
// ReadModel), the archiver ("archive", Archiver) with its reader
// (ReadArchive, ArchiveHead), and the replay that rebuilds the read model
// from position zero and swaps it in (Rebuild).
//
// # Read model
//
// The tables, and the stored values that the read side (query) interprets,
// are those of the internal/readmodel contract, described in the
// migrations. Each partition of the log is applied by one owner, in order,
// in batches; each batch is ONE transaction that
//
//  1. reads the pause row (read_model_control) under a shared lock (see
//     Rebuild),
//  2. locks the partition's checkpoint row (read_model_checkpoints) and
//     compares it with the batch: a newer stored fencing token fails with
//     projectors.ErrFenced, another position with
//     projectors.ErrCheckpointMoved, and nothing is applied,
//  3. loads the rows the batch touches with one query per table, applies
//     the events to them in memory in log order and writes the changed rows
//     back with multi-row INSERT ... ON DUPLICATE KEY UPDATE (and DELETE)
//     statements, in key order,
//  4. records quarantined entries, moves the checkpoint to the batch's end
//     and commits.
//
// So every effect is applied exactly once, even when two owners overlap.
// Multi-row statements are server-side prepared statements for the powers
// of two up to 256 rows, cached per connection, so the server parses no
// values and a table's rows of a batch take one statement per binary digit
// of their count; a batch of 500 direct messages costs about a dozen round
// trips.
//
// Rows that an aggregate owns carry the aggregate's version of the last
// event applied to them (users, chat_groups, conversations, messages,
// friend_requests). An event must carry the row's next version; one that
// does not was applied twice or an earlier one was skipped, and Apply fails
// loudly with ErrOutOfOrder instead of writing. An undecodable entry whose
// envelope still names its aggregate moves that version along, so it is not
// taken for a gap.
//
// Every row a partition loads belongs to that partition (an aggregate and
// everything derived from it live in one partition: a user's account and
// devices, a pair's contacts and direct messages, a group's members and
// messages), so folding a batch in memory is safe. The exception is
// user_conversations: a conversation's messages raise a member's last_seq
// from the conversation's partition while the member's read markers
// (ConversationRead) raise read_seq from the member's own partition. Those
// writes are commutative deltas (GREATEST of seqs and times, last-message
// columns from the higher last_seq, unread_count = max(last_seq - read_seq,
// 0) recomputed from the result), so the final rows are the same whatever
// the interleaving, and a rebuild matches the live model. The recipients of
// a message are the direct conversation's pair, or the group's members at
// that point of the log; the sender's own message advances the sender's
// read_seq, and joining a group counts what was sent before as read.
//
// group_member_periods records each membership as conversation seqs: a
// period opens at the group conversation's last seq when the member joins
// (at 0 while the group's history is visible to new members) and closes at
// the last seq when the member leaves or is removed. The group and its
// conversation share a partition, so the last seq is exact at that point of
// the log. A new member's conversation list entry shows no message sent
// before the join (unless the history is visible), and an edit or recall of
// such a message does not reach it.
//
// Decisions that quarantine an event (an unknown user or group, a recall of
// a message that does not exist, a field that does not fit its column, ...)
// use only state of the event's own partition, so the live model and a
// rebuild quarantine the same events.
//
// # Archive
//
// The Archiver copies every entry of the log into event_archive_segments
// with the same transactional checkpoint discipline (its checkpoints are
// the "archive" rows of projector_checkpoints): one row per batch, a
// segment of up to ArchiverConfig.SegmentEvents entries and SegmentBytes
// bytes holding each entry's position, version, seq and envelope bytes,
// with the first and last position, the count and a CRC-32C beside it (the
// layout is in segment.go). One row per batch instead of one per event
// roughly halves MariaDB's work for the archive. event_archive, one row per
// event, holds what archivers wrote before migration 0005 and entries
// re-applied from quarantine; ReadArchive merges both by position, so an
// older archive needs no migration step. The log may be trimmed below the
// archive's checkpoint and below every projector's (ReadModel and Archiver
// are projectors.Checkpointers for projectors.TrimLog); ReadArchive reads
// the archive back as the event store reads the stream, and fails with
// ErrMalformedSegment at a segment that does not decode.
//
// # Replay
//
// Rebuild builds a fresh copy of the read model into "<table>__rebuild"
// tables while the live one keeps running, and swaps it in with one RENAME
// TABLE together with its checkpoints; its doc comment describes the
// protocol.
package mysql
