// Package eventstore is mpim's event log on Redis Streams.
//
// The log is P partition streams (P fixed when a deployment is created and
// recorded in the store). An aggregate's partition is a stable hash of its
// partition key (PartitionHash, recorded with the count); a stream entry id is the event's Position in its partition.
// Every key of a partition shares the hash tag "{p<N>}", so each append is one
// Lua script on one slot and the same code runs on Redis Cluster.
//
// Key layout, per partition N, under the configured prefix:
//
//	{pN}:log          the partition stream; entries have fields v (version), s (seq), d (envelope)
//	{pN}:h            heads of the partition's aggregates: field <agg>, value "<v>"
//	                  (last version) or "<v>:<s>" (and last message seq, if not 0);
//	                  layout 1 had {pN}:h:<agg> (fields v, s), migrated at Open (layout.go)
//	{pN}:e:<agg>      the aggregate's own history stream (KeepHistory aggregates only)
//	{pN}:snap:<agg>   a snapshot of a KeepHistory aggregate: v (version), p (history entry of v), d (caller's encoding); a cache that expires
//	{pN}:c:<agg>      compact per-message state cells of a conversation, by seq
//	{pN}:i:<key>      idempotency record of a transaction (expires after IdempotencyTTL)
//	{pN}:dlq:<group>  a tap group's dead letters: the entry's fields, from (its position), n (deliveries)
//	{pN}:retry:<group> dead letters requeued for the group's taps (read before the log)
//	mpim:meta         deployment settings: partitions (the count), hash (the
//	                  PartitionHash; absent on deployments created before it,
//	                  which keep FNV-1a) and layout (LayoutHeadsHash; absent
//	                  until a layout-1 deployment is migrated); it exists once
//	                  the deployment was created, and a read-only Open requires it
//
// Append checks expected versions, guards, cells and the idempotency key, then
// assigns versions and conversation seqs and XADDs, all inside one script, so
// concurrent appenders on one aggregate never lose an update and seqs never
// repeat or skip. Concurrent appends to one partition are group-committed:
// they travel in one script call.
//
// What an acknowledged append means depends on Redis' persistence, which
// Durability exposes: with "appendfsync always" an acknowledged event survives
// a crash of the Redis node; with "everysec" up to a second may be lost unless
// WaitReplicas confirms the write reached replicas (bounded loss, more speed).
// Without AOF (the default of a fresh Redis) acknowledged events live in memory
// only. The store checks the server's settings at Open when asked to.
package eventstore
