package webhook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxListCount bounds one DeadLetters page.
const maxListCount = 10_000

// DeadLetter is a call the endpoint rejected or that failed MaxAttempts
// times, as the dead-letter stream holds it. ID is its stream id (its time
// is when it was dead-lettered); Key is its Idempotency-Key; Body is the
// JSON payload; Reason is the last failure (an error, or the status and up
// to 256 bytes of the answer) and Status the last HTTP status (0: none).
type DeadLetter struct {
	ID       string
	Key      string
	User     string
	Body     []byte
	Reason   string
	Status   int
	Attempts int
}

// At is when the call was dead-lettered.
func (d DeadLetter) At() time.Time {
	ms, _, _ := strings.Cut(d.ID, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n).UTC()
}

// deadLetter appends d to the dead-letter stream, retrying with backoff
// while Redis fails: a call is never settled before it is stored. It
// returns abandoned if ctx ends first.
func (s *Sender) deadLetter(ctx context.Context, d DeadLetter) result {
	args := &redis.XAddArgs{Stream: s.cfg.DeadLetterKey, MaxLen: s.cfg.DeadLetterLen, Approx: true, Values: []any{
		"key", d.Key, "user", d.User, "body", d.Body, "reason", d.Reason,
		"status", d.Status, "attempts", d.Attempts}}
	for n := 1; ; n++ {
		err := s.rdb.XAdd(ctx, args).Err()
		if err == nil {
			s.m.deadLettered.Inc()
			s.cfg.Logger.Warn("webhook: call dead-lettered", "key", d.Key, "user", d.User, "attempts", d.Attempts, "reason", d.Reason)
			return deadLettered
		}
		s.cfg.Logger.Error("webhook: storing a dead letter", "key", d.Key, "err", err)
		if s.sleep(ctx, s.backoff(n, 0)) != nil {
			return abandoned
		}
	}
}

// DeadLetterKey is the dead-letter stream of the deployment with key
// prefix prefix: the one mpimd's push projector and mpimctl both use.
func DeadLetterKey(prefix string) string { return prefix + "push:webhook:dlq" }

// DeadLetters returns up to count (1..10,000) dead letters whose id is
// after after ("": from the oldest), oldest first.
func (s *Sender) DeadLetters(ctx context.Context, after string, count int64) ([]DeadLetter, error) {
	return ListDeadLetters(ctx, s.rdb, s.cfg.DeadLetterKey, after, count)
}

// ListDeadLetters is Sender.DeadLetters of the stream key in rdb, for a
// caller that lists without sending (mpimctl).
func ListDeadLetters(ctx context.Context, rdb redis.UniversalClient, key, after string, count int64) ([]DeadLetter, error) {
	if count < 1 || count > maxListCount {
		return nil, fmt.Errorf("webhook: dead-letter count must be 1..%d, got %d", maxListCount, count)
	}
	start := "-"
	if after != "" {
		if err := checkID(after); err != nil {
			return nil, err
		}
		start = "(" + after
	}
	msgs, err := rdb.XRangeN(ctx, key, start, "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("webhook: reading dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decodeDeadLetter(m))
	}
	return out, nil
}

func decodeDeadLetter(m redis.XMessage) DeadLetter {
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	num := func(k string) int { n, _ := strconv.Atoi(str(k)); return n }
	return DeadLetter{ID: m.ID, Key: str("key"), User: str("user"), Body: []byte(str("body")),
		Reason: str("reason"), Status: num("status"), Attempts: num("attempts")}
}

// checkID checks a stream id "<ms>-<seq>".
func checkID(id string) error {
	ms, seq, ok := strings.Cut(id, "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("webhook: bad dead-letter id %q (want <ms>-<seq>)", id)
	}
	return nil
}

// ErrNoDeadLetter is returned by Resend for an id the stream does not hold.
var ErrNoDeadLetter = errors.New("webhook: no such dead letter")

// Resend sends dead letter id again, with its Idempotency-Key, a fresh
// timestamp and signature and the usual retries, under the endpoint's
// concurrency limit, and deletes it once it is delivered or dead-lettered
// anew (then under a new id; the error says why). It waits for the outcome
// or ctx; the dead letter stays when ctx ends first.
func (s *Sender) Resend(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	msgs, err := s.rdb.XRangeN(ctx, s.cfg.DeadLetterKey, id, id, 1).Result()
	if err != nil {
		return fmt.Errorf("webhook: reading dead letter %s: %w", id, err)
	}
	if len(msgs) == 0 {
		return fmt.Errorf("%w %s", ErrNoDeadLetter, id)
	}
	d := decodeDeadLetter(msgs[0])
	res := s.deliver(ctx, d.Body, d.Key, d.User)
	if res == abandoned {
		return fmt.Errorf("webhook: resending dead letter %s: %w", id, ctx.Err())
	}
	if err := s.rdb.XDel(ctx, s.cfg.DeadLetterKey, id).Err(); err != nil {
		return fmt.Errorf("webhook: deleting re-sent dead letter %s: %w", id, err)
	}
	if res == deadLettered {
		return fmt.Errorf("webhook: dead letter %s failed again and was dead-lettered anew", id)
	}
	return nil
}
