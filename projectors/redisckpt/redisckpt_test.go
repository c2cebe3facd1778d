package redisckpt_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/redis/go-redis/v9"
)

const name = "testproj"

// newStore returns a Store under a key prefix of the test's own on a real
// Redis, with its client.
func newStore(tb testing.TB) (*redisckpt.Store, *redis.Client, string) {
	tb.Helper()
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	tb.Cleanup(func() { rdb.Close() })
	return redisckpt.New(rdb, rt.Prefix, name), rdb, rt.Prefix
}

func storedToken(tb testing.TB, rdb *redis.Client, s *redisckpt.Store, partition int) string {
	tb.Helper()
	v, err := rdb.HGet(context.Background(), s.Key(partition), "token").Result()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func TestKeyLayout(t *testing.T) {
	s := redisckpt.New(nil, "mpim:", "inbox")
	if got, want := s.Key(7), "mpim:proj:{inbox:p7}:ckpt"; got != want {
		t.Errorf("Key(7) = %q, want %q", got, want)
	}
	if got, want := s.Tag(7), "mpim:proj:{inbox:p7}:"; got != want {
		t.Errorf("Tag(7) = %q, want %q", got, want)
	}
	if got := s.Name(); got != "inbox" {
		t.Errorf("Name() = %q", got)
	}
	if got := redisckpt.FormatToken(math.MaxUint64); got != "18446744073709551615" {
		t.Errorf("FormatToken(MaxUint64) = %q", got)
	}
}

func TestKeyPatternMatchesOnlyTheCheckpoints(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	prefix := rt.Prefix + `a*[b]?\:` // glob metacharacters must match literally
	s := redisckpt.New(rdb, prefix, name)
	want := []string{s.Key(0), s.Key(1), s.Key(12)}
	others := []string{
		s.Tag(1) + "members:g1",
		redisckpt.New(rdb, prefix, name+"2").Key(1),
		redisckpt.New(rdb, rt.Prefix+"aXYbZ:", name).Key(1), // what the unescaped pattern would match
	}
	for _, k := range append(slices.Clone(want), others...) {
		if err := rdb.HSet(ctx, k, "pos", "1-0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	iter := rdb.Scan(ctx, 0, s.KeyPattern(), 1000).Iterator()
	for iter.Next(ctx) {
		got = append(got, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("SCAN %s = %q, want %q", s.KeyPattern(), got, want)
	}
}

func TestClaim(t *testing.T) {
	ctx := context.Background()
	const p = 3

	t.Run("first claim resumes from zero", func(t *testing.T) {
		s, rdb, _ := newStore(t)
		pos, err := s.Claim(ctx, p, 1)
		if err != nil || !pos.IsZero() {
			t.Fatalf("Claim = %v, %v; want zero position", pos, err)
		}
		if got := storedToken(t, rdb, s, p); got != "1" {
			t.Fatalf("stored token %q, want 1", got)
		}
	})

	t.Run("claim resumes from the stored checkpoint", func(t *testing.T) {
		s, rdb, _ := newStore(t)
		if err := rdb.HSet(ctx, s.Key(p), "pos", "1700000000000-4", "token", "5").Err(); err != nil {
			t.Fatal(err)
		}
		pos, err := s.Claim(ctx, p, 6)
		if want := (eventstore.Position{Ms: 1_700_000_000_000, Seq: 4}); err != nil || pos != want {
			t.Fatalf("Claim = %v, %v; want %v", pos, err, want)
		}
	})

	// Each case claims first and then second, in a partition of its own.
	cases := []struct {
		name          string
		first, second uint64
		fenced        bool
	}{
		{"newer token takes over", 1, 2, false},
		{"same token claims again", 7, 7, false},
		{"older token is fenced", 2, 1, true},
		{"longer token is newer", 999, 1000, false},
		{"shorter token is older", 1000, 999, true},
		{"newer token above 2^53 takes over", 1 << 53, 1<<53 + 1, false},
		{"older token above 2^53 is fenced", 1<<53 + 1, 1 << 53, true},
		{"older token near 2^64 is fenced", math.MaxUint64, math.MaxUint64 - 1, true},
		{"newest token near 2^64 takes over", math.MaxUint64 - 1, math.MaxUint64, false},
	}
	s, rdb, _ := newStore(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Claim(ctx, i, c.first); err != nil {
				t.Fatal(err)
			}
			_, err := s.Claim(ctx, i, c.second)
			stored := c.second
			if c.fenced {
				if !errors.Is(err, projectors.ErrFenced) {
					t.Fatalf("Claim(%d) after %d: %v, want ErrFenced", c.second, c.first, err)
				}
				if !strings.HasPrefix(err.Error(), name+": ") {
					t.Errorf("error %q does not name the projector", err)
				}
				stored = c.first
			} else if err != nil {
				t.Fatalf("Claim(%d) after %d: %v", c.second, c.first, err)
			}
			if got := storedToken(t, rdb, s, i); got != redisckpt.FormatToken(stored) {
				t.Fatalf("stored token %s, want %d", got, stored)
			}
		})
	}
}

func TestCheckpoint(t *testing.T) {
	ctx := context.Background()
	s, rdb, _ := newStore(t)
	pos, err := s.Checkpoint(ctx, 0)
	if err != nil || !pos.IsZero() {
		t.Fatalf("Checkpoint of a partition never claimed = %v, %v; want zero", pos, err)
	}
	if _, err := s.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if pos, err := s.Checkpoint(ctx, 0); err != nil || !pos.IsZero() {
		t.Fatalf("Checkpoint of a partition claimed, no batch = %v, %v; want zero", pos, err)
	}
	if err := rdb.HSet(ctx, s.Key(0), "pos", "12-3").Err(); err != nil {
		t.Fatal(err)
	}
	if pos, err := s.Checkpoint(ctx, 0); err != nil || pos != (eventstore.Position{Ms: 12, Seq: 3}) {
		t.Fatalf("Checkpoint = %v, %v; want 12-3", pos, err)
	}
	if got := storedToken(t, rdb, s, 0); got != "1" {
		t.Fatalf("Checkpoint changed the token to %s", got)
	}
}

func TestVerdict(t *testing.T) {
	s := redisckpt.New(nil, "mpim:", name)
	cases := []struct {
		name  string
		reply []any
		want  error // nil, a sentinel, or errOther
		msg   string
	}{
		{"ok alone is nil", []any{"O"}, nil, ""},
		{"ok with a position is nil", []any{"O", "5-0"}, nil, ""},
		{"ok with the script's own replies is nil", []any{"O", []any{"u1", "u2"}, []any{}}, nil, ""},
		{"F is fenced", []any{"F", "9"}, projectors.ErrFenced, name + ": partition 2 token 4, claimed by 9: "},
		{"M is moved", []any{"M", "3-1"}, projectors.ErrCheckpointMoved, name + ": partition 2 checkpoint is at 3-1: "},
		{"unknown status is another error", []any{"X"}, errOther, name + ": unexpected script reply [X]"},
		{"empty reply is another error", []any{}, errOther, name + ": empty script reply"},
		{"non-string status is another error", []any{int64(1)}, errOther, name + ": unexpected script reply [1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Verdict(c.reply, 2, 4)
			switch c.want {
			case nil:
				if err != nil {
					t.Fatalf("Verdict(%v) = %v, want nil", c.reply, err)
				}
				return
			case errOther: //nolint:errorlint // c.want is the table's own sentinel, not a returned error
				if err == nil || errors.Is(err, projectors.ErrFenced) || errors.Is(err, projectors.ErrCheckpointMoved) {
					t.Fatalf("Verdict(%v) = %v, want an error that is neither fenced nor moved", c.reply, err)
				}
			default:
				if !errors.Is(err, c.want) {
					t.Fatalf("Verdict(%v) = %v, want %v", c.reply, err, c.want)
				}
			}
			if !strings.HasPrefix(err.Error(), c.msg) {
				t.Errorf("message %q, want it to start with %q", err, c.msg)
			}
		})
	}
}

var errOther = errors.New("another error")
