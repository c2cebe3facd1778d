package testsvc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

// RedisTarget is where a test may use Redis.
type RedisTarget struct {
	// Addr is the server's host:port.
	Addr string
	// Prefix is unique to the test, of the form "t:<random>:". The test must
	// start every key it creates with Prefix; keys with the prefix are
	// deleted when the test ends. Hash tags after the prefix ("t:x:{p3}:log")
	// keep working.
	Prefix string
}

// Redis checks that the Redis server at MPIM_TEST_REDIS (default
// 127.0.0.1:6379) answers PING and returns it with a key prefix unique to tb.
// Keys under the prefix are deleted (SCAN + UNLINK) in tb.Cleanup. If the
// server does not answer, Redis fails tb with tb.Fatalf; it never skips.
func Redis(tb testing.TB) *RedisTarget {
	tb.Helper()
	addr := env("MPIM_TEST_REDIS", "127.0.0.1:6379")
	if err := redisPing(addr); err != nil {
		tb.Fatalf("testsvc: Redis at %s (MPIM_TEST_REDIS) does not answer: %v\n\t%s", addr, err, hint)
	}
	rt := &RedisTarget{Addr: addr, Prefix: "t:" + randomID(12) + ":"}
	tb.Cleanup(func() {
		if err := redisDeletePrefix(addr, rt.Prefix); err != nil {
			tb.Logf("testsvc: deleting Redis keys %s*: %v", rt.Prefix, err)
		}
	})
	return rt
}

func redisPing(addr string) error {
	c, err := dialRESP(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.do("PING")
	if err != nil {
		return err
	}
	if r != "PONG" {
		return fmt.Errorf("PING answered %v", r)
	}
	return nil
}

// Keys lists every key under the target's prefix, sorted: a test that must
// leave the prefix untouched (or empty) compares it before and after.
func (rt *RedisTarget) Keys(tb testing.TB) []string {
	tb.Helper()
	var all []string
	err := redisScanPrefix(rt.Addr, rt.Prefix, func(_ *respConn, keys []any) error {
		for _, k := range keys {
			all = append(all, fmt.Sprint(k))
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("testsvc: listing Redis keys %s*: %v", rt.Prefix, err)
	}
	slices.Sort(all)
	return all
}

// redisDeletePrefix unlinks every key that starts with prefix. The prefix
// comes from randomID and holds no glob metacharacters.
func redisDeletePrefix(addr, prefix string) error {
	return redisScanPrefix(addr, prefix, func(c *respConn, keys []any) error {
		_, err := c.do(append([]any{"UNLINK"}, keys...)...)
		return err
	})
}

// redisScanPrefix calls page with each non-empty SCAN page of the keys that
// start with prefix.
func redisScanPrefix(addr, prefix string, page func(*respConn, []any) error) error {
	c, err := dialRESP(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return scanPrefix(c, prefix, func(keys []any) error { return page(c, keys) })
}

// scanPrefix calls page with each non-empty SCAN page of the keys on c's
// server that start with prefix.
func scanPrefix(c *respConn, prefix string, page func([]any) error) error {
	cursor := "0"
	for {
		r, err := c.do("SCAN", cursor, "MATCH", prefix+"*", "COUNT", "1000")
		if err != nil {
			return err
		}
		reply, ok := r.([]any)
		if !ok || len(reply) != 2 {
			return fmt.Errorf("unexpected SCAN reply %v", r)
		}
		cursor, _ = reply[0].(string)
		if keys, _ := reply[1].([]any); len(keys) > 0 {
			if err := page(keys); err != nil {
				return err
			}
		}
		if cursor == "0" || cursor == "" {
			return nil
		}
	}
}

// respConn is the smallest RESP2 client that PING, SCAN and UNLINK need, so
// this package does not depend on a Redis client library.
type respConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRESP(addr string) (*respConn, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	return &respConn{conn: conn, r: bufio.NewReader(conn)}, nil
}

func (c *respConn) Close() error { return c.conn.Close() }

// do sends one command (arguments are strings) and returns its reply:
// string for simple and bulk strings, int64, nil, or []any.
func (c *respConn) do(args ...any) (any, error) {
	if err := c.conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return nil, err
	}
	buf := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		s := fmt.Sprint(a)
		buf = fmt.Appendf(buf, "$%d\r\n%s\r\n", len(s), s)
	}
	if _, err := c.conn.Write(buf); err != nil {
		return nil, err
	}
	return c.read()
}

func (c *respConn) read() (any, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed RESP line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return nil, errors.New(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = c.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unexpected RESP type %q", kind)
	}
}
