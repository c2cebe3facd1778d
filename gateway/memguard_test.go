package gateway_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// privateRedis starts a redis-server of the test's own on a free loopback
// port with the given extra arguments and returns its address; it is killed
// when the test ends.
func privateRedis(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (scripts/services.sh installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	logf := filepath.Join(dir, "redis.log")
	cmd := exec.Command("redis-server", append([]string{"--port", addr[strings.LastIndex(addr, ":")+1:], "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", logf, "--protected-mode", "no"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			out, _ := os.ReadFile(logf)
			t.Logf("redis-server log:\n%s", out)
		}
	})
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	gatewaytest.Eventually(t, "the private redis-server answers", func() bool {
		select {
		case <-exited:
			t.Fatalf("redis-server exited at start-up")
		default:
		}
		return c.Ping(context.Background()).Err() == nil
	})
	return addr
}

// redisMemory returns used_memory and maxmemory of INFO memory.
func redisMemory(t *testing.T, c redis.UniversalClient) (used, limit int64) {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) int64 {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatalf("INFO memory has no %s", name)
		return 0
	}
	return field("used_memory"), field("maxmemory")
}

// TestRedisShortOfMemoryRefusesNewContentFirst: above the configured share
// of maxmemory, sends and registrations are answered "overloaded" (with
// retryAfterMs) while Redis itself still accepts writes, and reads, logins
// and acks keep working; below it again, sends work.
func TestRedisShortOfMemoryRefusesNewContentFirst(t *testing.T) {
	addr := privateRedis(t, "--maxmemory", "32mb", "--maxmemory-policy", "noeviction")
	e := gatewaytest.NewAt(t, addr, "memguard:", func(c *gateway.Config, _ *gateway.Deps) {
		c.MemoryLimitFraction = 0.5
		c.MemoryCheckInterval = 10 * time.Millisecond
	})
	a, b := e.Login(t, frame.JSON, "ann"), e.Login(t, frame.JSON, "ben")
	gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "before", ""))

	// Fill Redis past half of maxmemory, below maxmemory.
	ctx := context.Background()
	filler := strings.Repeat("x", 256<<10)
	var keys []string
	for i := 0; ; i++ {
		used, limit := redisMemory(t, e.Redis)
		if used >= limit*6/10 {
			break
		}
		if i == 200 {
			t.Fatalf("used_memory %d of %d after %d filler keys", used, limit, i)
		}
		k := fmt.Sprintf("filler:%d", i)
		if err := e.Redis.Set(ctx, k, filler, 0).Err(); err != nil {
			t.Fatalf("filling: %v", err)
		}
		keys = append(keys, k)
	}

	var refused *mpimv1.Error
	for i := 0; refused == nil; i++ {
		if i == 10_000 {
			t.Fatal("sends never refused above the memory limit")
		}
		r := gatewaytest.Call(t, a.Conn, gatewaytest.SendTo(b.ID, fmt.Sprintf("m%d", i), ""))
		switch er := r.GetError(); {
		case er == nil:
			time.Sleep(5 * time.Millisecond) // the guard has not read INFO yet
		case er.GetCode() == "overloaded":
			refused = er
		default:
			t.Fatalf("send answered %v, want success or overloaded", er)
		}
	}
	if refused.GetRetryAfterMs() == 0 || !strings.Contains(refused.GetMessage(), "short of storage") {
		t.Fatalf("overloaded error %v: want retryAfterMs and a clear message", refused)
	}
	if err := e.Redis.Set(ctx, "probe", "1", 0).Err(); err != nil {
		t.Fatalf("Redis already refuses writes (%v): the guard answered too late", err)
	}
	gatewaytest.Fails(t, a.Conn, "overloaded", &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "g", MemberIds: []string{b.ID}}})
	gatewaytest.Fails(t, e.Dial(t, frame.JSON), "overloaded", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "cat", Password: "a long password"}})
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}})
	gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: gatewaytest.DirectOf(a.ID, b.ID), Seq: 1}})
	gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: gatewaytest.DirectOf(a.ID, b.ID)}})
	gatewaytest.OK(t, e.Dial(t, frame.JSON), &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: "ann", Password: "password-ann", DeviceId: "d2", Platform: "test"}})

	if err := e.Redis.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Eventually(t, "sends accepted again", func() bool {
		return gatewaytest.Call(t, a.Conn, gatewaytest.SendTo(b.ID, "after", "after-1")).GetError() == nil
	})
}
