package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mpim/mpim/internal/testsvc"
)

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// startStack builds mpimd and runs a projector and a gateway process on
// the test services; it returns the gateway's WebSocket URL.
func startStack(t *testing.T) string {
	t.Helper()
	rt := testsvc.Redis(t)
	dsn := testsvc.MySQL(t)
	servers, root := testsvc.ZooKeeper(t)
	t.Cleanup(func() { deleteZK(t, servers, root) }) // runs after the processes are killed
	dir := t.TempDir()
	bin := filepath.Join(dir, "mpimd")
	build := exec.Command("go", "build", "-race", "-o", bin, "../mpimd")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building mpimd: %v", err)
	}
	common := []string{"--redis-addr", rt.Addr, "--prefix", rt.Prefix, "--mysql", dsn, "--partitions", "4",
		"--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
		"--trim-interval", "0", "--log-level", "warn"}
	listen := freePort(t)
	var ops []string
	start := func(name string, args ...string) {
		op := freePort(t)
		ops = append(ops, op)
		logPath := filepath.Join(dir, name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, append(append(args, common...), "--http-addr", op)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
			out, _ := os.ReadFile(logPath)
			for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
				if bytes.Contains(out, []byte(bad)) {
					t.Errorf("%s: %q in its log", name, bad)
				}
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", name, out)
			}
		})
	}
	start("projector", "projector", "--member-id", "p0")
	start("gateway", "gateway", "--gateway-id", "gw-chat", "--listen", listen)
	waitFor(t, "the stack to be ready", func() bool {
		for _, op := range ops {
			if httpStatus("http://"+op+"/readyz") != http.StatusOK {
				return false
			}
		}
		return httpStatus("http://"+listen+"/dispatch") == http.StatusOK
	})
	return "ws://" + listen + "/ws"
}

func deleteZK(t *testing.T, servers []string, root string) {
	c, _, err := zk.Connect(servers, 5*time.Second, zk.WithLogger(quietZK{}))
	if err != nil {
		t.Logf("zookeeper cleanup: %v", err)
		return
	}
	defer c.Close()
	var del func(p string)
	del = func(p string) {
		children, _, err := c.Children(p)
		if err != nil {
			return
		}
		for _, ch := range children {
			del(p + "/" + ch)
		}
		if err := c.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			t.Logf("zookeeper cleanup %s: %v", p, err)
		}
	}
	del(root)
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminal is one running chat session.
type terminal struct {
	name string
	in   *io.PipeWriter
	out  *syncBuffer
	done chan error
}

func startChat(t *testing.T, ctx context.Context, url, name string, extra ...string) *terminal {
	t.Helper()
	r, w := io.Pipe()
	tm := &terminal{name: name, in: w, out: &syncBuffer{}, done: make(chan error, 1)}
	args := append([]string{"--gateway", url, "--user", name, "--register", "--password-env", "CHAT_TEST_PASSWORD"}, extra...)
	go func() { tm.done <- chatMain(ctx, args, r, tm.out, tm.out) }()
	t.Cleanup(func() { w.Close() })
	tm.expect(t, "logged in as "+name)
	return tm
}

func (tm *terminal) say(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(tm.in, line); err != nil {
		t.Fatalf("%s: writing %q: %v", tm.name, line, err)
	}
}

// expect waits until the output holds want (counted from the start).
func (tm *terminal) expect(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(tm.out.String(), want) {
		select {
		case err := <-tm.done:
			t.Fatalf("%s ended (%v) before printing %q:\n%s", tm.name, err, want, tm.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed %q:\n%s", tm.name, want, tm.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestChatTwoUsersExchangeMessages(t *testing.T) {
	url := startStack(t)
	t.Setenv("CHAT_TEST_PASSWORD", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ann := startChat(t, ctx, url, "ann")
	bob := startChat(t, ctx, url, "bob", "--encoding", "proto")

	// Bad input is reported and the session goes on.
	ann.say(t, "hello?")
	ann.expect(t, "error: no open conversation")
	ann.say(t, "/frobnicate")
	ann.expect(t, "error: unknown command /frobnicate")
	ann.say(t, "   ")
	ann.expect(t, "error: empty message")
	ann.say(t, "/to nobody-here")
	ann.expect(t, "error: user nobody-here")
	ann.say(t, "/history x")
	ann.expect(t, "error: /history: N must be")

	// Become friends.
	ann.say(t, "/add bob")
	bob.expect(t, "friend request from ann to bob")
	bob.say(t, "/friends")
	bob.expect(t, "request from ann")
	bob.say(t, "/accept ann")
	ann.expect(t, "ann and bob are now friends")

	// Chat 1:1 both ways.
	ann.say(t, "/to bob")
	ann.expect(t, "now talking in bob")
	ann.say(t, "hi bob")
	bob.expect(t, "] ann: hi bob")
	bob.say(t, "/to ann")
	bob.say(t, "hi ann, from the proto side")
	ann.expect(t, "] bob: hi ann, from the proto side")
	bob.say(t, "/history 5")
	bob.expect(t, "-- 2 message(s) of ann --")
	ann.say(t, "/friends")
	ann.expect(t, "  bob (bob)")

	// A group.
	ann.say(t, "/group crew bob")
	ann.expect(t, "now talking in #crew")
	ann.say(t, "all hands")
	bob.expect(t, "ann: all hands [c/")

	ann.say(t, "/quit")
	bob.in.Close() // end of input ends the session too
	for _, tm := range []*terminal{ann, bob} {
		select {
		case err := <-tm.done:
			if err != nil {
				t.Errorf("%s: %v\n%s", tm.name, err, tm.out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not end", tm.name)
		}
	}
	if t.Failed() {
		t.Logf("ann:\n%s\nbob:\n%s", ann.out.String(), bob.out.String())
	}
}

func TestChatRefusesBadInvocations(t *testing.T) {
	t.Setenv("CHAT_TEST_PASSWORD_UNSET_X", "")
	for _, args := range [][]string{
		{"--gateway", "ws://127.0.0.1:1/ws"},
		{"--user", "ann", "--password-env", "CHAT_TEST_PASSWORD_UNSET_X"},
	} {
		var out bytes.Buffer
		if err := chatMain(context.Background(), args, strings.NewReader(""), &out, &out); err == nil {
			t.Errorf("chat %v: no error", args)
		}
	}
}
