// Package webhook sends push notifications to one HTTP endpoint: the
// webhook a relay turns into APNs, FCM or Web Push messages (docs/push.md).
//
// A Sender takes batches of Notifications from its one caller (the push
// projector), collapses the notifications of one user that arrive within
// Config.Window into one call carrying their count and the latest of them,
// and posts each call as signed JSON (HMAC-SHA256 over "<timestamp>.<body>")
// with the latest event id as Idempotency-Key. A call is retried with
// exponential backoff and full jitter on network errors, timeouts, 5xx and
// 429 (honouring Retry-After up to Config.MaxBackoff); any other answer
// that is not 2xx, or Config.MaxAttempts failures, moves it to a bounded
// dead-letter Redis stream, from which DeadLetters lists and Resend sends
// again.
//
// Nothing is dropped. Calls held (collapsing, queued or in flight) are
// bounded by count and bytes; when the bound is reached Submit waits for
// room, so a slow or dead endpoint holds back the caller and nothing else.
// Submit numbers each batch; Settled and Wait tell the caller when every
// call carrying a notification of that batch, or of any earlier batch, was
// delivered or dead-lettered, which is when its checkpoint may pass the
// batch. Delivery is at least once: a call may arrive twice (a retry after
// a lost answer, a re-sent dead letter, a replay after a crash) and then
// carries the same Idempotency-Key, except after a crash, where the replayed
// notifications may collapse differently.
//
// Calls of one user are sent one at a time, in the order of their
// notifications: while a user's call is in flight, later notifications of
// the user collapse until it settles.
package webhook
