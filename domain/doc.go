// Package domain is mpim's vocabulary: identifiers, events, commands,
// aggregates and the rules that connect them, plus the error codes every other
// package speaks. It is pure Go and imports only the standard library; the
// event store, projectors and gateway import it, never the reverse. It reads
// no clock, mints no ids and does no I/O, so every decision is deterministic.
//
// # Deciding and applying
//
// Every write has one shape. The caller loads an aggregate by replaying its
// events (RebuildUser, RebuildUsername, RebuildRelationship, RebuildGroup; an
// aggregate without events is the rebuild of none), asks it to Decide a
// command, and appends the returned events with the aggregate's Version as
// the expected version, in one call. On a version conflict it reloads and
// decides again. The New* constructors validate ids and return the empty
// aggregate that a first command (RegisterUser, CreateGroup, ...) is decided
// on; the Rebuild* functions are the separate path from the log, which they
// trust.
//
// Every aggregate's Decide takes the command, the current time and the Policy:
//
//	Decide(cmd <Kind>Command, now time.Time, p Policy) ([]Event, error)
//
// where <Kind>Command is implemented only by that aggregate's commands, passed
// by value. Decide never mutates the aggregate, so a rejected or conflicting
// command leaves nothing to undo. It returns the events to append, or a *Error
// whose Code says why not (EInvalid for malformed input, ETooLarge for input
// over a limit, and the codes each Decide documents). Apply is the only
// mutation: it moves the aggregate forward by one event, and Version counts
// the events applied. Apply rejects, with EInvalid, only events that do not
// belong to the aggregate: other aggregates' event types, events naming
// another aggregate or users outside it, events before the aggregate's first
// event and a second first event. It does not re-check Decide's rules, so a
// log written under older rules still replays.
//
// Messages have no loaded aggregate: the event store assigns each MessageSent
// its seq atomically. DecideSend checks the sender against the Relationship or
// Group that governs the conversation (they share its partition), DecideRecall
// and DecideEdit also decide against the compact MessageState the store keeps
// per message, and the reader's DecideMarkRead and DecideDeleteForMe need no
// state at all.
//
// Events and commands are values (UserRegistered, not *UserRegistered). Times
// in events are UTC with millisecond precision. Aggregates are not safe for
// concurrent use: Decide and the query methods only read, so they may run
// concurrently with each other, but not with Apply.
package domain
