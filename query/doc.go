// Package query is mpim's read side: it answers the queries of clients from
// the read models the projectors write, beside the write side (command),
// which decides on the event store alone. It owns every SQL statement that
// reads the MySQL read model (the tables of internal/readmodel, written by
// projectors/mysql) and every read of the Redis cache model (the keys of
// internal/cachekeys, written by projectors/cache). It never writes.
//
// A Service answers profiles, friends, friend requests and blocks, groups
// and their members, a user's conversation list, a conversation's history
// and a user's devices, and gives the cached sets that typing and presence
// need (group members, blocks, friends). Whether a user is online is not a
// read model: the gateway asks the delivery hub, which reads the presence
// routes of internal/inbox.
//
// # Staleness and ordering
//
// Every answer lags the log: by the MySQL projector's batch and linger for
// the tables, by the cache projector's batch for the cache. A query right
// after a command may not see it yet, and two queries may see different
// points of the log (the tables and the cache are written by different
// projectors, each partition at its own pace). Within one conversation
// the history is in seq order and never shows a later message without the
// earlier ones its partition wrote before it. Nothing here decides a
// command: the write side re-checks membership, blocks and mutes.
//
// Lists are bounded: paged lists (history, conversations) take their page
// size from the domain (domain.HistoryPage, domain.ConversationsPage) and a
// history page stops at Config.HistoryPageBytes; the other lists stop at
// MaxList rows. Errors are domain errors: EInvalid for arguments out of
// range, ENotFound, ENotMember and EForbidden where a method says so, and
// EUnavailable when MySQL or Redis fails.
package query
