// Package cache is the cache projector (name "cache"): Redis read models the
// gateway reads on hot paths — profiles, friend sets, block sets, group info
// and group members with their roles and mutes. The key layout is the
// contract in internal/cachekeys, which the gateway imports instead of this
// package.
//
// # Idempotence
//
// Every write sets or deletes one element to a value the event alone
// determines (HSET, HDEL, SADD, SREM), and each element is written only from
// the events of one partition (a user's profile from the user's, a pair's
// friendship and blocks from the pair's, a group's hashes and its members'
// group sets from the group's), in log order. Applying the events after a
// checkpoint again, after a crash that left some of their writes done,
// therefore ends in the same state: the last write of each element wins and
// is the same. Nothing is read back from the model to decide a write.
//
// A batch is applied in three round trips: a fencing check (a batch fenced,
// ErrFenced, or behind a moved checkpoint, ErrCheckpointMoved, writes
// nothing), the writes and quarantine records in one pipeline, and the
// checkpoint's compare-and-set of (position, token). The writes span hash
// slots, so they cannot share the checkpoint's script on Redis Cluster: an
// owner that loses its partition after its check and writes late may leave
// an element one event behind until that element is written again or the
// model is rebuilt. Partition ownership (a new owner waits for the old one's
// ZooKeeper node to go) makes that window rare. A batch that changes nothing
// in the model (only messages, the common case) takes one round trip: the
// compare-and-set alone.
//
// # Rebuilding
//
// Reset deletes every key of the model, the quarantine stream and the
// checkpoints' positions (not the fencing tokens); a projector run from zero
// afterwards rebuilds the same model. Stop the projector's runners first: a
// running owner gets ErrCheckpointMoved on its next batch and restarts from
// zero on its own, but the model is incomplete until the rebuild catches up.
//
// # Quarantine
//
// Entries the runner could not decode (Batch.Skipped) and envelopes the codec
// rejects are recorded in the capped stream <prefix>quarantine:cache (fields
// partition, position, reason, raw) and the checkpoint moves past them.
package cache
