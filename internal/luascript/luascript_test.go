package luascript

import (
	"context"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// client returns a client of an in-process Redis.
func client(tb testing.TB) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(tb).Addr()})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestSourceIsPreludeThenBody(t *testing.T) {
	src := Source("return 1")
	if !strings.HasPrefix(src, prelude) || !strings.HasSuffix(src, "\nreturn 1") {
		t.Fatalf("Source = %q", src)
	}
}

func TestNewerComparesTokensAsNumbers(t *testing.T) {
	rdb := client(t)
	script := New("return newer(ARGV[1], ARGV[2]) and 1 or 0")
	for _, tc := range []struct {
		a, b string
		want int64
	}{
		{"2", "1", 1}, {"1", "2", 0}, {"1", "1", 0},
		{"10", "9", 1}, {"9", "10", 0},
		// Above 2^53, where Lua numbers would call these equal.
		{"18446744073709551615", "18446744073709551614", 1},
		{"18446744073709551614", "18446744073709551615", 0},
	} {
		got, err := script.Run(context.Background(), rdb, nil, tc.a, tc.b).Int64()
		if err != nil || got != tc.want {
			t.Errorf("newer(%s, %s) = %d, %v; want %d", tc.a, tc.b, got, err, tc.want)
		}
	}
}

func TestFencedRefusesANewerTokenOrAnotherPosition(t *testing.T) {
	ctx := context.Background()
	rdb := client(t)
	script := New(`return fenced(KEYS[1], ARGV[1], ARGV[2]) or {"O"}`)
	run := func(token, after string) string {
		t.Helper()
		v, err := script.Run(ctx, rdb, []string{"ckpt"}, token, after).StringSlice()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(v, " ")
	}
	if got := run("1", "0-0"); got != "O" {
		t.Errorf("no checkpoint yet, after 0-0: %q, want O", got)
	}
	if got := run("1", "5-0"); got != "M 0-0" {
		t.Errorf("no checkpoint yet, after 5-0: %q, want M 0-0", got)
	}
	rdb.HSet(ctx, "ckpt", "token", "7", "pos", "5-1")
	for _, tc := range []struct{ token, after, want string }{
		{"7", "5-1", "O"},
		{"8", "5-1", "O"},
		{"6", "5-1", "F 7"},
		{"7", "5-0", "M 5-1"},
	} {
		if got := run(tc.token, tc.after); got != tc.want {
			t.Errorf("token %s after %s: %q, want %q", tc.token, tc.after, got, tc.want)
		}
	}
}
