package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// chatStack is a projector and a gateway process on the test services.
type chatStack struct {
	t      *testing.T
	bin    string
	dir    string
	common []string
	gws    []*chatProc // the gateways
}

// chatProc is one running mpimd process.
type chatProc struct {
	name   string
	listen string // a gateway's client address
	ops    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startStack builds mpimd and runs a projector and a gateway process on
// the test services; it returns the gateway's WebSocket URL.
func startStack(t *testing.T) string {
	t.Helper()
	return startChatStack(t, 1).url(0)
}

// startChatStack runs a projector and n gateways.
func startChatStack(t *testing.T, n int) *chatStack {
	t.Helper()
	rt := testsvc.Redis(t)
	dsn := testsvc.MySQL(t)
	servers, root := testsvc.ZooKeeper(t)
	t.Cleanup(func() { // runs after the processes are killed
		if err := testsvc.DeleteZooKeeperTree(servers, root); err != nil {
			t.Logf("zookeeper cleanup: %v", err)
		}
	})
	dir := t.TempDir()
	bin := filepath.Join(dir, "mpimd")
	build := exec.Command("go", "build", "-race", "-o", bin, "../mpimd")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building mpimd: %v", err)
	}
	s := &chatStack{t: t, bin: bin, dir: dir,
		common: []string{"--redis-addr", rt.Addr, "--prefix", rt.Prefix, "--mysql", dsn, "--partitions", "4",
			"--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
			"--trim-interval", "0", "--log-level", "warn"}}
	procs := []*chatProc{s.start("projector", "projector", "--member-id", "p0")}
	for i := range n {
		id := fmt.Sprintf("gw-chat%d", i)
		gw := s.start(id, "gateway", "--gateway-id", id, "--listen", testsvc.FreeAddr(t))
		s.gws = append(s.gws, gw)
		procs = append(procs, gw)
	}
	s.waitReady(procs...)
	return s
}

// url is the WebSocket URL of gateway i.
func (s *chatStack) url(i int) string { return "ws://" + s.gws[i].listen + "/ws" }

// start runs mpimd with args; the process is killed when the test ends,
// and a data race or panic in its log fails the test.
func (s *chatStack) start(name string, args ...string) *chatProc {
	t := s.t
	t.Helper()
	p := &chatProc{name: name, ops: testsvc.FreeAddr(t), exited: make(chan struct{})}
	for i, a := range args {
		if a == "--listen" && i+1 < len(args) {
			p.listen = args[i+1]
		}
	}
	logPath := filepath.Join(s.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(s.bin, append(append(args, s.common...), "--http-addr", p.ops)...)
	p.cmd.Env = append(os.Environ(), "MPIM_PASSWORD_KEY="+strings.Repeat("5a", 32)) // the gateways' shared password key
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
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
	return p
}

func (s *chatStack) waitReady(procs ...*chatProc) {
	s.t.Helper()
	// Start-up patience is generous: race-built processes on a loaded
	// 2-core machine have taken over a minute to pass /readyz.
	testsvc.Eventually(s.t, 3*time.Minute, "the stack to be ready", func() bool {
		for _, p := range procs {
			select {
			case <-p.exited:
				s.t.Fatalf("%s exited at start-up", p.name)
			default:
			}
			if httpStatus("http://"+p.ops+"/readyz") != http.StatusOK ||
				(p.listen != "" && httpStatus("http://"+p.listen+"/dispatch") != http.StatusOK) {
				return false
			}
		}
		return true
	})
}

// killGateway kills gateway i with SIGKILL: its connections drop without
// a goodbye.
func (s *chatStack) killGateway(i int) {
	s.t.Helper()
	if err := s.gws[i].cmd.Process.Kill(); err != nil {
		s.t.Fatalf("killing %s: %v", s.gws[i].name, err)
	}
	<-s.gws[i].exited
}

// replaceGateway starts a gateway named id on the address of the (killed)
// gateway i, where its clients find it again.
func (s *chatStack) replaceGateway(i int, id string) {
	s.t.Helper()
	s.gws[i] = s.start(id, "gateway", "--gateway-id", id, "--listen", s.gws[i].listen)
	s.waitReady(s.gws[i])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsvc.Eventually(t, 60*time.Second, what, cond)
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
	args := append([]string{"--gateway", url, "--user", name, "--register", "--password-env", "CHAT_TEST_PASSWORD"}, extra...)
	return startTerminal(t, ctx, name, name, args)
}

// startTerminal runs the chat of user name with args on a terminal called
// label and waits until it has logged in.
func startTerminal(t *testing.T, ctx context.Context, label, name string, args []string) *terminal {
	t.Helper()
	r, w := io.Pipe()
	tm := &terminal{name: label, in: w, out: &syncBuffer{}, done: make(chan error, 1)}
	go func() { tm.done <- chatMain(ctx, args, r, tm.out, tm.out) }()
	t.Cleanup(func() { w.Close() })
	tm.expect(t, "logged in as "+name)
	return tm
}

// waitEnded waits (bounded) until every terminal's chat has ended and
// reports those that ended with an error.
func waitEnded(t *testing.T, tms ...*terminal) {
	t.Helper()
	for _, tm := range tms {
		select {
		case err := <-tm.done:
			if err != nil {
				t.Errorf("%s: %v\n%s", tm.name, err, tm.out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not end", tm.name)
		}
	}
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
	tm.expectTimes(t, want, 1)
}

// expectTimes waits until the output holds want n times: an answer
// printed before would not show that the last line was answered.
func (tm *terminal) expectTimes(t *testing.T, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(tm.out.String(), want) < n {
		select {
		case err := <-tm.done:
			t.Fatalf("%s ended (%v) before printing %q:\n%s", tm.name, err, want, tm.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed %q (%d times wanted):\n%s", tm.name, want, n, tm.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sayUntil says line until the output holds want: for queries of the read
// models, which follow the event log within a moment.
func (tm *terminal) sayUntil(t *testing.T, line, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tm.say(t, line)
		end := time.Now().Add(time.Second)
		for time.Now().Before(end) {
			if strings.Contains(tm.out.String(), want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed %q after %q:\n%s", tm.name, want, line, tm.out.String())
		}
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
	bob.sayUntil(t, "/friends", "request from ann")
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
	// Control sequences in a message reach the other terminal escaped.
	ann.say(t, "look \x1b[2J\x1b]0;pwned\x07 \u202egnp.exe")
	bob.expect(t, `] ann: look \x1b[2J\x1b]0;pwned\x07 \u202egnp.exe`)
	if out := bob.out.String(); strings.ContainsAny(out, "\x1b\x07\u202e") {
		t.Errorf("bob's terminal got a raw control character:\n%q", out)
	}
	bob.sayUntil(t, "/history 5", "-- 3 message(s) of ann --")
	ann.sayUntil(t, "/friends", "  bob (bob)")

	// A group.
	ann.say(t, "/group crew bob")
	ann.expect(t, "now talking in #crew")
	ann.say(t, "all hands")
	bob.expect(t, "ann: all hands [c/")

	ann.say(t, "/quit")
	bob.in.Close() // end of input ends the session too
	waitEnded(t, ann, bob)
	if t.Failed() {
		t.Logf("ann:\n%s\nbob:\n%s", ann.out.String(), bob.out.String())
	}
}

// The chat client survives a gateway restart: Bob's gateway is killed
// (SIGKILL) and a new one started on its address. Bob's client notices,
// reconnects with backoff and resumes his device: the message Ann sent
// while he was away arrives (from his cursor), messages shown before are
// not shown again, and the conversation goes on both ways, also a message
// Bob typed while disconnected (it waits for the connection).
func TestChatReconnectsAfterGatewayRestart(t *testing.T) {
	st := startChatStack(t, 2)
	t.Setenv("CHAT_TEST_PASSWORD", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ann := startChat(t, ctx, st.url(0), "ann")
	bob := startChat(t, ctx, st.url(1), "bob", "--encoding", "proto")

	ann.say(t, "/to bob")
	ann.expect(t, "now talking in bob")
	bob.say(t, "/to ann")
	bob.expect(t, "now talking in ann")
	for i := 1; i <= 3; i++ {
		ann.say(t, fmt.Sprintf("before %d", i))
	}
	bob.expect(t, "] ann: before 3")

	st.killGateway(1)
	bob.expect(t, "* connection lost")
	// Bob types while disconnected: the message waits for the connection.
	bob.say(t, "typed while away")
	// Ann, on the other gateway, writes meanwhile: it waits in Bob's inbox.
	ann.say(t, "while you were away")
	ann.expect(t, "] ann: while you were away") // stored (the send's answer, which Ann's screen shows)
	st.replaceGateway(1, "gw-chat1b")
	bob.expect(t, "* reconnected")
	bob.expect(t, "] ann: while you were away")
	ann.expect(t, "] bob: typed while away")
	ann.say(t, "after the restart")
	bob.expect(t, "] ann: after the restart")
	bob.say(t, "bob after the restart")
	ann.expect(t, "] bob: bob after the restart")

	// Every message exactly once on each screen, in the order sent.
	check := func(tm *terminal, lines ...string) {
		t.Helper()
		out, last := tm.out.String(), -1
		for _, l := range lines {
			if n := strings.Count(out, l+"\n"); n != 1 {
				t.Errorf("%s shows %q %d times, want once:\n%s", tm.name, l, n, out)
				continue
			}
			i := strings.Index(out, l+"\n")
			if i < last {
				t.Errorf("%s shows %q out of order:\n%s", tm.name, l, out)
			}
			last = i
		}
	}
	msgs := []string{"] ann: before 1", "] ann: before 2", "] ann: before 3", "] ann: while you were away"}
	check(bob, append(msgs, "] bob: typed while away", "] ann: after the restart", "] bob: bob after the restart")...)
	check(ann, append(msgs, "] bob: typed while away", "] ann: after the restart", "] bob: bob after the restart")...)
	if n := strings.Count(bob.out.String(), "* reconnected"); n != 1 {
		t.Errorf("bob reconnected %d times, want once:\n%s", n, bob.out.String())
	}
	if strings.Contains(ann.out.String(), "* connection lost") {
		t.Errorf("ann, on the other gateway, lost her connection:\n%s", ann.out.String())
	}

	ann.say(t, "/quit")
	bob.say(t, "/quit")
	waitEnded(t, ann, bob)
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

// A second chat of the same user and device takes the device over: the
// first one is closed by the gateway (4001) and ends with an error that says
// so, instead of reconnecting and taking it back.
func TestChatEndsWhenItsDeviceConnectsAgain(t *testing.T) {
	url := startStack(t)
	t.Setenv("CHAT_TEST_PASSWORD", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := startChat(t, ctx, url, "cyd", "--device", "laptop")
	r, w := io.Pipe()
	defer w.Close()
	out := &syncBuffer{}
	second := make(chan error, 1)
	go func() {
		second <- chatMain(ctx, []string{"--gateway", url, "--user", "cyd", "--password-env", "CHAT_TEST_PASSWORD", "--device", "laptop"}, r, out, out)
	}()
	select {
	case err := <-first.done:
		if err == nil || !strings.Contains(err.Error(), "replaced") {
			t.Fatalf("first chat ended with %v, want replaced:\n%s", err, first.out.String())
		}
	case err := <-second:
		t.Fatalf("second chat ended first: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("first chat still running:\n%s\nsecond:\n%s", first.out.String(), out.String())
	}
	if strings.Contains(first.out.String(), "reconnecting") {
		t.Fatalf("first chat tried to reconnect:\n%s", first.out.String())
	}
	w.Close()
	if err := <-second; err != nil {
		t.Fatalf("second chat: %v\n%s", err, out.String())
	}
}

// The session commands: /devices lists both devices of the user, /password
// changes the password and logs the other chat out (it ends with an error
// saying so instead of reconnecting), /logout-device and /logout-others end
// the chats of other devices, and bad input is reported while the session
// goes on.
func TestChatManagesDevices(t *testing.T) {
	stack := startChatStack(t, 2)
	t.Setenv("CHAT_TEST_PASSWORD", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	laptop := startChat(t, ctx, stack.url(0), "dee", "--device", "laptop")
	phone := startChatAgain(t, ctx, stack.url(1), "dee", "phone")
	laptop.sayUntil(t, "/devices", "phone (mpimctl) online")
	laptop.expect(t, "laptop (mpimctl) online")
	laptop.expect(t, "(this device)")

	laptop.say(t, "/logout-device")
	laptop.expect(t, "usage: /logout-device DEVICE")
	laptop.say(t, "/logout-device two words")
	laptop.expectTimes(t, "usage: /logout-device DEVICE", 2)
	laptop.say(t, "/logout-device laptop")
	laptop.expect(t, "error: invalid")
	laptop.say(t, "/logout-device nobody-here")
	laptop.expect(t, "error: not_found")
	laptop.say(t, "/password")
	laptop.say(t, "short")
	laptop.expect(t, "error: password not changed: invalid")

	laptop.say(t, "/password")
	laptop.say(t, "a brand new password")
	laptop.expect(t, "password changed")
	phone.ended(t, "logged out")

	t.Setenv("CHAT_TEST_PASSWORD", "a brand new password")
	tablet := startChatAgain(t, ctx, stack.url(1), "dee", "tablet")
	laptop.say(t, "/logout-device tablet")
	laptop.expect(t, "device tablet logged out")
	tablet.ended(t, "logged out")

	desk := startChatAgain(t, ctx, stack.url(0), "dee", "desk")
	laptop.say(t, "/logout-others")
	laptop.expect(t, "every other device logged out")
	desk.ended(t, "logged out")
	laptop.say(t, "/quit")
	if err := <-laptop.done; err != nil {
		t.Fatalf("laptop: %v\n%s", err, laptop.out.String())
	}
}

// startChatAgain starts a chat of an existing user on another device.
func startChatAgain(t *testing.T, ctx context.Context, url, name, device string) *terminal {
	t.Helper()
	args := []string{"--gateway", url, "--user", name, "--password-env", "CHAT_TEST_PASSWORD", "--device", device}
	return startTerminal(t, ctx, name+"@"+device, name, args)
}

// ended waits (bounded) until the chat ends with an error holding want,
// without having tried to reconnect.
func (tm *terminal) ended(t *testing.T, want string) {
	t.Helper()
	select {
	case err := <-tm.done:
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s ended with %v, want %q:\n%s", tm.name, err, want, tm.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running, want it ended (%s):\n%s", tm.name, want, tm.out.String())
	}
	if strings.Contains(tm.out.String(), "reconnecting") {
		t.Fatalf("%s tried to reconnect:\n%s", tm.name, tm.out.String())
	}
}
