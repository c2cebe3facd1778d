package coord

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mpim/mpim/internal/testsvc"
)

// testSessionTimeout is short so that lost sessions expire quickly; the
// server raises anything below 2×tickTime (4s with services.sh's tickTime).
const testSessionTimeout = 4 * time.Second

// zkEnv is one test's ZooKeeper namespace.
type zkEnv struct {
	servers []string
	root    string
	logs    *syncBuffer
}

// newEnv returns a fresh root on the test ZooKeeper; the tree under it is
// deleted when the test ends, after the coordinators it made are closed.
// Logs of all coordinators are printed if the test fails.
func newEnv(t *testing.T) *zkEnv {
	t.Helper()
	servers, root := testsvc.ZooKeeper(t)
	env := &zkEnv{servers: servers, root: root, logs: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("MPIM_TEST_LOGS") != "" {
			t.Logf("coordinator logs:\n%s", env.logs.String())
		}
		if err := testsvc.DeleteZooKeeperTree(servers, root); err != nil {
			t.Errorf("deleting %s: %v", root, err)
		}
	})
	return env
}

// coordinator returns a ZooKeeper on env named member, closed when the test
// ends. A non-nil cut routes its connections through cut.
func (env *zkEnv) coordinator(t *testing.T, member string, cut *cutter) *ZooKeeper {
	t.Helper()
	cfg := Config{
		Servers:        env.servers,
		Root:           env.root,
		SessionTimeout: testSessionTimeout,
		MemberID:       member,
		Logger:         slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if cut != nil {
		cfg.dialer = cut.dial
	}
	z, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)
	return z
}

// conn returns a plain client for looking at the tree, closed when the test
// ends.
func (env *zkEnv) conn(t *testing.T) *zk.Conn {
	t.Helper()
	c, _, err := zk.Connect(env.servers, testSessionTimeout, zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// cutter dials ZooKeeper and can cut the client off, like a network
// partition: the client loses its connection without closing its session,
// which the server expires after the session timeout.
type cutter struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (c *cutter) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, fmt.Errorf("dial %s: cut off by the test", addr)
	}
	conn, err := net.DialTimeout(network, addr, timeout)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

// set cuts (closing every open connection) or restores the network.
func (c *cutter) set(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			conn.Close()
		}
		c.conns = nil
	}
}

// eventually polls cond until it holds, failing the test with what and
// state() after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still not %s: %s", timeout, what, state())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.buf.String())
}
