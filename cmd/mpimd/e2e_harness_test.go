package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// This file is the harness of the end-to-end tests (e2e_test.go): a
// deployment of real mpimd processes, and client devices that speak the
// client protocol over WebSocket the way an app does (acknowledge pushes,
// de-duplicate them by event id, resume on another gateway when the
// connection drops, retry sends with the same client message id).

// e2ePartitions is the partition count of the end-to-end deployments.
const e2ePartitions = "8"

// mpimdProc is one running mpimd process.
type mpimdProc struct {
	name string
	addr string // gateways: the client address (/ws, /dispatch)
	ops  string // the ops address (/readyz)
	cmd  *exec.Cmd
	log  string // the file holding its stdout and stderr

	exited chan struct{} // closed when the process has ended
	err    error         // why it ended; set before exited is closed
}

// alive reports whether the process still runs.
func (p *mpimdProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill ends the process with SIGKILL and waits for it to be gone.
func (p *mpimdProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s: %v", p.name, err)
	}
	<-p.exited
}

// e2eCluster is a deployment of the built mpimd: one projector and two
// gateways (gw-a, gw-b) on one Redis prefix, MySQL database and ZooKeeper
// root, and the client devices of the test.
type e2eCluster struct {
	t         *testing.T
	ctx       context.Context // ends when the test's devices are shut down
	projector *mpimdProc
	gateways  []*mpimdProc
	faults    faultAllowance // what the audits excuse (e2e_audit_test.go)
	args      []string       // the settings its processes share (real servers only)

	mu      sync.Mutex
	devices []*e2eDevice
}

// startE2ECluster builds mpimd and starts the projector and both gateways
// (with ZooKeeper, 8 partitions, trimming every testTrimInterval, log level
// warn), and waits until all three are ready and both gateways dispatch.
// When the test ends (and passed so far) it checks that the log was
// trimmed, while the processes still run.
func startE2ECluster(t *testing.T) *e2eCluster {
	t.Helper()
	common := clusterArgs(t)
	bin := buildBinary(t)
	logDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cl := &e2eCluster{t: t, ctx: ctx, args: common}
	// Devices stop before the processes do (cleanups run last first).
	t.Cleanup(func() { cl.stopDevices(cancel) })
	start := func(name string, role string, extra ...string) *mpimdProc {
		return startMpimd(t, bin, logDir, name, append(append([]string{role}, common...), extra...)...)
	}
	cl.projector = start("projector", "projector", "--member-id", "p0")
	for _, id := range []string{"gw-a", "gw-b"} {
		cl.gateways = append(cl.gateways, start(id, "gateway", "--gateway-id", id, "--listen", testsvc.FreeAddr(t)))
	}
	for _, p := range append([]*mpimdProc{cl.projector}, cl.gateways...) {
		waitUntil(t, p.name+" ready", func() bool {
			if !p.alive() {
				t.Fatalf("%s exited at start-up: %v", p.name, p.err)
			}
			return httpGet(p.ops, "/readyz") == http.StatusOK && (p.addr == "" || httpGet(p.addr, "/dispatch") == http.StatusOK)
		})
	}
	// Registered after the processes: runs before they are killed.
	t.Cleanup(func() {
		if !t.Failed() {
			t.Logf("%v", waitTrimmed(t, flagValue(common, "--redis-addr"), flagValue(common, "--prefix"), cl.partitions()))
		}
	})
	return cl
}

// partitions returns the partition count of the end-to-end deployments.
func (cl *e2eCluster) partitions() int {
	n, err := strconv.Atoi(e2ePartitions)
	if err != nil {
		cl.t.Fatal(err)
	}
	return n
}

// clusterArgs sets up a deployment (Redis prefix, database, ZooKeeper root,
// deleted after the processes are gone) and returns the settings every
// process of it shares: 8 partitions, trimming every testTrimInterval (as
// production does every minute), log level warn.
func clusterArgs(t *testing.T) []string {
	t.Helper()
	d := newDeployment(t)
	servers, root := testsvc.ZooKeeper(t)
	t.Cleanup(func() { // cleanups run last first: after the processes
		if err := testsvc.DeleteZooKeeperTree(servers, root); err != nil {
			t.Logf("deleting ZooKeeper %s: %v", root, err)
		}
	})
	return d.args("--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
		"--partitions", e2ePartitions, "--trim-interval", testTrimInterval)
}

// startEmbeddedCluster builds mpimd and starts one `mpimd all` given nothing
// but its addresses: embedded Redis and MySQL stand-ins, static
// coordination. The one process is the cluster's projector and both its
// "gateways", so the end-to-end tests run unchanged against it. extra are
// more flags.
func startEmbeddedCluster(t *testing.T, extra ...string) *e2eCluster {
	t.Helper()
	bin := buildBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	cl := &e2eCluster{t: t, ctx: ctx}
	t.Cleanup(func() { cl.stopDevices(cancel) })
	p := startMpimd(t, bin, t.TempDir(), "gw-embedded", append([]string{"all", "--gateway-id", "gw-embedded", "--listen", testsvc.FreeAddr(t), "--log-level", "warn"}, extra...)...)
	waitUntil(t, "embedded mpimd ready", func() bool {
		if !p.alive() {
			t.Fatalf("embedded mpimd exited at start-up: %v", p.err)
		}
		return httpGet(p.ops, "/readyz") == http.StatusOK && httpGet(p.addr, "/dispatch") == http.StatusOK
	})
	if out, _ := os.ReadFile(p.log); !bytes.Contains(out, []byte("DATA LIVES IN MEMORY ONLY")) {
		t.Fatalf("embedded mpimd did not warn that data lives in memory only:\n%s", out)
	}
	cl.projector, cl.gateways = p, []*mpimdProc{p, p}
	return cl
}

// testPasswordKey is the password key of every mpimd the tests start
// (MPIM_PASSWORD_KEY): gateways of one deployment, restarts included, share it.
const testPasswordKey = "6d70696d2074657374207061737377726420b579206e6f742061207365637274"

// redirectOrCrossSlot matches what a process logs when a command reached a
// node that does not own its slot, or spanned slots.
var redirectOrCrossSlot = regexp.MustCompile(`\bMOVED\b|\bASK\b|CROSSSLOT`)

// failoverTests are the tests (by name) that fail a master over: a command
// in flight when the slot's new master took over may fail with the MOVED
// the cluster answers until the client reloads its slot map, so their logs
// may hold MOVED lines (never ASK or CROSSSLOT).
var failoverTests sync.Map

// expectFailoverRedirects lets t's mpimd logs hold MOVED lines.
func expectFailoverRedirects(t *testing.T) {
	failoverTests.Store(t.Name(), true)
	t.Cleanup(func() { failoverTests.Delete(t.Name()) })
}

var askOrCrossSlot = regexp.MustCompile(`\bASK\b|CROSSSLOT`)

// startMpimd starts the binary with args, its output in logDir/name.log,
// on a free ops port. The process is killed when the test ends; its log is
// shown if the test failed, and a data race or panic in it fails the test,
// as does, on a Redis Cluster (a --redis-addr listing several nodes), a
// MOVED, ASK or CROSSSLOT in it.
func startMpimd(t *testing.T, bin, logDir, name string, args ...string) *mpimdProc {
	t.Helper()
	p := &mpimdProc{name: name, ops: testsvc.FreeAddr(t), log: filepath.Join(logDir, name+".log"), exited: make(chan struct{})}
	onCluster := strings.Contains(flagValue(args, "--redis-addr"), ",")
	for i, a := range args {
		if a == "--listen" && i+1 < len(args) {
			p.addr = args[i+1]
		}
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, append(args, "--http-addr", p.ops)...)
	p.cmd.Env = append(os.Environ(), "MPIM_PASSWORD_KEY="+testPasswordKey)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		out, _ := os.ReadFile(p.log)
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Errorf("%s: %q in its log", name, bad)
			}
		}
		if onCluster {
			bad := redirectOrCrossSlot
			if _, ok := failoverTests.Load(t.Name()); ok {
				bad = askOrCrossSlot
			}
			var redirects [][]byte
			for _, line := range bytes.Split(out, []byte("\n")) {
				if bad.Match(line) {
					redirects = append(redirects, line)
				}
			}
			if len(redirects) > 0 {
				t.Errorf("%s on the Redis Cluster logged %d lines with MOVED, ASK or CROSSSLOT, the first:\n%s",
					name, len(redirects), bytes.Join(redirects[:min(3, len(redirects))], []byte("\n")))
			}
		}
		if t.Failed() {
			const keep = 16 << 10
			if len(out) > keep {
				out = append([]byte("...\n"), out[len(out)-keep:]...)
			}
			t.Logf("%s log (%s):\n%s", name, p.log, out)
		}
	})
	return p
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

// httpGet returns the status of GET http://addr/path, or 0 if there is no
// answer.
func httpGet(addr, path string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// dispatch asks the dispatcher of gateway addr for a gateway.
func dispatch(addr string) (client.Gateway, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return client.Dispatch(ctx, nil, "http://"+addr+"/dispatch")
}

// candidates lists where a client tries to connect, best first: the
// gateway a dispatcher hands out (the first gateway that answers, in random
// order), then every gateway it knows, as a fallback while a dead gateway is
// still registered.
func (cl *e2eCluster) candidates() []string {
	var out []string
	for _, i := range rand.Perm(len(cl.gateways)) {
		if a, err := dispatch(cl.gateways[i].addr); err == nil {
			out = append(out, a.Addr)
			break
		}
	}
	for _, g := range cl.gateways {
		if !slices.Contains(out, g.addr) {
			out = append(out, g.addr)
		}
	}
	return out
}

// stopDevices closes every device's connection and waits for their
// goroutines.
func (cl *e2eCluster) stopDevices(cancel context.CancelFunc) {
	cancel()
	cl.mu.Lock()
	devs := slices.Clone(cl.devices)
	cl.mu.Unlock()
	for _, d := range devs {
		d.mu.Lock()
		d.offline = true
		cn := d.conn
		d.mu.Unlock()
		if cn != nil {
			cn.c.CloseNow()
		}
	}
	for _, d := range devs {
		d.wg.Wait()
	}
}

// e2eUser is a registered user.
type e2eUser struct {
	name, id string
}

func (u *e2eUser) password() string { return "password-" + u.name }

// dialOnce opens a fresh connection to gw for a few requests within 30 s;
// done closes it.
func (cl *e2eCluster) dialOnce(t *testing.T, gw *mpimdProc) (context.Context, *client.Conn, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(cl.ctx, 30*time.Second)
	c, err := client.Dial(ctx, "ws://"+gw.addr+"/ws", nil)
	if err != nil {
		cancel()
		t.Fatalf("dial %s: %v", gw.name, err)
	}
	return ctx, c, func() { c.Close(); cancel() }
}

// register registers a user over a fresh connection to gw.
func (cl *e2eCluster) register(t *testing.T, gw *mpimdProc, name string) *e2eUser {
	t.Helper()
	ctx, c, done := cl.dialOnce(t, gw)
	defer done()
	u := &e2eUser{name: name}
	var r *mpimv1.Response
	var err error
	for {
		// unavailable: the server's MySQL answered late (a loaded machine,
		// the embedded one-connection stand-in); a real client retries.
		r, err = c.Call(ctx, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: name, Password: u.password(), DisplayName: name}})
		if err != nil || r.GetError().GetCode() != "unavailable" || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || r.GetError() != nil {
		t.Fatalf("register %s: %v %v", name, err, r.GetError())
	}
	u.id = r.GetRegister().GetUserId()
	return u
}
