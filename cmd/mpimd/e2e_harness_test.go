package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mpim/mpim/gateway/frame"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
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

	mu      sync.Mutex
	devices []*e2eDevice
}

// startE2ECluster builds mpimd and starts the projector and both gateways
// (with ZooKeeper, 8 partitions, no trimming, log level warn), and waits
// until all three are ready and both gateways dispatch.
func startE2ECluster(t *testing.T) *e2eCluster {
	t.Helper()
	common := clusterArgs(t)
	bin := buildBinary(t)
	logDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cl := &e2eCluster{t: t, ctx: ctx}
	// Devices stop before the processes do (cleanups run last first).
	t.Cleanup(func() { cl.stopDevices(cancel) })
	start := func(name string, role string, extra ...string) *mpimdProc {
		return startMpimd(t, bin, logDir, name, append(append([]string{role}, common...), extra...)...)
	}
	cl.projector = start("projector", "projector", "--member-id", "p0")
	for _, id := range []string{"gw-a", "gw-b"} {
		cl.gateways = append(cl.gateways, start(id, "gateway", "--gateway-id", id, "--listen", freeAddr(t)))
	}
	for _, p := range append([]*mpimdProc{cl.projector}, cl.gateways...) {
		waitUntil(t, p.name+" ready", func() bool {
			if !p.alive() {
				t.Fatalf("%s exited at start-up: %v", p.name, p.err)
			}
			return httpGet(p.ops, "/readyz") == http.StatusOK && (p.addr == "" || httpGet(p.addr, "/dispatch") == http.StatusOK)
		})
	}
	return cl
}

// clusterArgs sets up a deployment (Redis prefix, database, ZooKeeper root,
// deleted after the processes are gone) and returns the settings every
// process of it shares: 8 partitions, no trimming, log level warn.
func clusterArgs(t *testing.T) []string {
	t.Helper()
	d := newDeployment(t)
	servers, root := testsvc.ZooKeeper(t)
	t.Cleanup(func() { // cleanups run last first: after the processes
		if err := deleteZKTree(servers, root); err != nil {
			t.Logf("deleting ZooKeeper %s: %v", root, err)
		}
	})
	return d.args("--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
		"--partitions", e2ePartitions, "--trim-interval", "0")
}

// startEmbeddedCluster builds mpimd and starts one `mpimd all` given nothing
// but its addresses: embedded Redis and MySQL stand-ins, static
// coordination. The one process is the cluster's projector and both its
// "gateways", so the end-to-end tests run unchanged against it.
func startEmbeddedCluster(t *testing.T) *e2eCluster {
	t.Helper()
	bin := buildBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	cl := &e2eCluster{t: t, ctx: ctx}
	t.Cleanup(func() { cl.stopDevices(cancel) })
	p := startMpimd(t, bin, t.TempDir(), "gw-embedded", "all", "--gateway-id", "gw-embedded", "--listen", freeAddr(t), "--log-level", "warn")
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

// startMpimd starts the binary with args, its output in logDir/name.log,
// on a free ops port. The process is killed when the test ends; its log is
// shown if the test failed, and a data race or panic in it fails the test.
func startMpimd(t *testing.T, bin, logDir, name string, args ...string) *mpimdProc {
	t.Helper()
	p := &mpimdProc{name: name, ops: freeAddr(t), log: filepath.Join(logDir, name+".log"), exited: make(chan struct{})}
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

// deleteZKTree deletes root and everything under it.
func deleteZKTree(servers []string, root string) error {
	c, _, err := zk.Connect(servers, 5*time.Second, zk.WithLogger(zkQuiet{}))
	if err != nil {
		return err
	}
	defer c.Close()
	var del func(p string) error
	del = func(p string) error {
		children, _, err := c.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, ch := range children {
			if err := del(p + "/" + ch); err != nil {
				return err
			}
		}
		if err := c.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		return nil
	}
	return del(root)
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

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

// dispatchAnswer is the body of GET /dispatch.
type dispatchAnswer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// dispatch asks the dispatcher of gateway addr for a gateway.
func dispatch(addr string) (dispatchAnswer, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/dispatch")
	if err != nil {
		return dispatchAnswer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return dispatchAnswer{}, fmt.Errorf("dispatch at %s: %s", addr, resp.Status)
	}
	var a dispatchAnswer
	err = json.NewDecoder(resp.Body).Decode(&a)
	return a, err
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
			cn.c.Conn().CloseNow()
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

// register registers a user over a fresh connection to gw.
func (cl *e2eCluster) register(t *testing.T, gw *mpimdProc, name string) *e2eUser {
	t.Helper()
	ctx, cancel := context.WithTimeout(cl.ctx, 30*time.Second)
	defer cancel()
	c, err := gatewaytest.Dial(ctx, "ws://"+gw.addr+"/ws", frame.Proto, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", gw.name, err)
	}
	defer c.Close()
	u := &e2eUser{name: name}
	var r *mpimv1.Response
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

// msgKey identifies a message as its sender's client knows it.
type msgKey struct {
	conv, sender, clientMsgID string
}

// shownEvent is an event on a device's screen: pushed, not a duplicate.
type shownEvent struct {
	eventID, typ, inboxID string
	msg                   msgKey // MessageSent only
	seq                   uint64 // MessageSent only
}

// deviceStats are a device's counts.
type deviceStats struct {
	pushes     int // every push, duplicates included
	dupPushes  int // pushes of an event id already shown (dropped by the client)
	resends    int // pushes marked resend
	syncs      int // sync_required frames
	outOfOrder int // messages shown with a seq at or below one shown before in their conversation
	gaps       int // messages shown with a seq beyond the next one of their conversation
	reconnects int
	dialFails  int // reconnect attempts that failed (a dead gateway, still dispatched or known)
	ackErrors  int
}

func (s *deviceStats) add(o deviceStats) {
	s.pushes += o.pushes
	s.dupPushes += o.dupPushes
	s.resends += o.resends
	s.syncs += o.syncs
	s.outOfOrder += o.outOfOrder
	s.gaps += o.gaps
	s.reconnects += o.reconnects
	s.dialFails += o.dialFails
	s.ackErrors += o.ackErrors
}

// e2eConn is one connection of a device.
type e2eConn struct {
	c    *gatewaytest.Client
	gw   string        // the gateway's address
	kick chan struct{} // capacity 1: a push arrived, acknowledge it
	// settled is closed once dial decided whether the connection became
	// the device's (the receiver waits for it before reconnecting).
	settled chan struct{}
	// guarded by the device's mu
	lastInbox string // the latest inbox id pushed on this connection
	acked     string // the latest inbox id acknowledged on this connection
}

// e2eDevice is a client device: it acknowledges every push (one ack covers
// all earlier ones), shows each event once (de-duplicated by event id),
// checks that each conversation's messages appear in seq order without
// gaps, and, unless offline, resumes with its token on whatever gateway it
// reaches when its connection ends.
type e2eDevice struct {
	cl   *e2eCluster
	user *e2eUser
	id   string
	enc  frame.Encoding

	wg sync.WaitGroup // the goroutines of its connections and reconnects

	mu        sync.Mutex
	token     string
	conn      *e2eConn      // nil while disconnected
	connected chan struct{} // closed while conn is set
	offline   bool          // the user closed the app: do not reconnect
	screen    []shownEvent
	byEvent   map[string]bool
	byMsg     map[msgKey][]int // indexes into screen
	lastSeq   map[string]uint64
	stats     deviceStats
	problems  []string // the first few order problems, for the failure message
}

func (d *e2eDevice) String() string { return d.user.name + "/" + d.id }

// login logs a new device of u in on gw and waits for the sync_required
// every new device gets first.
func (cl *e2eCluster) login(t *testing.T, u *e2eUser, device string, gw *mpimdProc, enc frame.Encoding) *e2eDevice {
	t.Helper()
	d := &e2eDevice{cl: cl, user: u, id: device, enc: enc, connected: make(chan struct{}),
		byEvent: map[string]bool{}, byMsg: map[msgKey][]int{}, lastSeq: map[string]uint64{}}
	cl.mu.Lock()
	cl.devices = append(cl.devices, d)
	cl.mu.Unlock()
	if err := d.dialRetry(gw.addr); err != nil {
		t.Fatalf("%s: login on %s: %v", d, gw.name, err)
	}
	waitUntil(t, d.String()+" sync_required", func() bool { return d.snapshot().syncs >= 1 })
	return d
}

// dialRetry is dial, repeated for up to 30 s while the gateway answers
// unavailable (its MySQL late on a loaded machine).
func (d *e2eDevice) dialRetry(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := d.dial(addr)
		if err == nil || !strings.Contains(err.Error(), "unavailable") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dial connects to the gateway at addr and logs in (first time) or resumes
// with the device's token.
func (d *e2eDevice) dial(addr string) error {
	ctx, cancel := context.WithTimeout(d.cl.ctx, 20*time.Second)
	defer cancel()
	c, err := gatewaytest.Dial(ctx, "ws://"+addr+"/ws", d.enc, nil)
	if err != nil {
		return err
	}
	cn := &e2eConn{c: c, gw: addr, kick: make(chan struct{}, 1), settled: make(chan struct{})}
	defer close(cn.settled)
	// Pushes may follow the login response at once: receive from the start.
	d.wg.Add(2)
	go d.receive(cn)
	go d.acker(cn)
	d.mu.Lock()
	token := d.token
	d.mu.Unlock()
	var req any = &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: token}}
	if token == "" {
		req = &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: d.user.name, Password: d.user.password(), DeviceId: d.id, Platform: "e2e"}}
	}
	r, err := c.Call(ctx, req)
	if err == nil && r.GetError() != nil {
		err = fmt.Errorf("%s: %s", r.GetError().GetCode(), r.GetError().GetMessage())
	}
	if err != nil {
		c.Conn().CloseNow()
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.offline || d.conn != nil {
		c.Conn().CloseNow()
		return fmt.Errorf("%s: connected while offline or connected already", d)
	}
	if token == "" {
		d.token = r.GetLogin().GetToken()
	}
	d.conn = cn
	close(d.connected)
	return nil
}

// receive handles the frames of cn until it ends, then reconnects unless
// the device is offline or cn was not its connection.
func (d *e2eDevice) receive(cn *e2eConn) {
	defer d.wg.Done()
	for {
		f, err := cn.c.Next(context.Background())
		if err != nil {
			break
		}
		switch x := f.GetFrame().(type) {
		case *mpimv1.ServerFrame_Push:
			d.push(cn, x.Push)
		case *mpimv1.ServerFrame_SyncRequired:
			d.mu.Lock()
			d.stats.syncs++
			d.mu.Unlock()
		}
	}
	<-cn.settled
	d.mu.Lock()
	current := d.conn == cn
	if current {
		d.conn, d.connected = nil, make(chan struct{})
	}
	again := current && !d.offline
	if again {
		d.wg.Add(1)
	}
	d.mu.Unlock()
	if again {
		go d.reconnect()
	}
}

// push shows a pushed event unless its id was shown before, and has it
// acknowledged.
func (d *e2eDevice) push(cn *e2eConn, p *mpimv1.Push) {
	ev := p.GetEvent()
	if ev == nil {
		ev = &mpimv1.Event{}
		if err := proto.Unmarshal(p.GetEnvelope(), ev); err != nil {
			d.cl.t.Errorf("%s: undecodable envelope in push %s: %v", d, p.GetInboxId(), err)
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.pushes++
	if p.GetResend() {
		d.stats.resends++
	}
	if inboxAfter(p.GetInboxId(), cn.lastInbox) {
		cn.lastInbox = p.GetInboxId()
	}
	select {
	case cn.kick <- struct{}{}:
	default:
	}
	id := string(ev.GetId())
	if d.byEvent[id] {
		d.stats.dupPushes++
		return
	}
	d.byEvent[id] = true
	s := shownEvent{eventID: id, typ: p.GetType(), inboxID: p.GetInboxId()}
	if m := ev.GetMessageSent(); m != nil {
		s.msg = msgKey{conv: m.GetConversationId(), sender: m.GetSenderId(), clientMsgID: m.GetClientMsgId()}
		s.seq = ev.GetSeq()
		last := d.lastSeq[s.msg.conv]
		switch {
		case s.seq <= last:
			d.stats.outOfOrder++
			d.problem("%s: seq %d after %d (%s)", s.msg.conv, s.seq, last, s.msg.clientMsgID)
		case s.seq > last+1:
			d.stats.gaps++
			d.problem("%s: seq %d after %d, a gap (%s)", s.msg.conv, s.seq, last, s.msg.clientMsgID)
			d.lastSeq[s.msg.conv] = s.seq
		default:
			d.lastSeq[s.msg.conv] = s.seq
		}
		d.byMsg[s.msg] = append(d.byMsg[s.msg], len(d.screen))
	}
	d.screen = append(d.screen, s)
}

// problem records an order problem; the caller holds d.mu.
func (d *e2eDevice) problem(format string, args ...any) {
	if len(d.problems) < 5 {
		d.problems = append(d.problems, fmt.Sprintf(format, args...))
	}
}

// acker acknowledges the latest push of cn whenever pushes arrived, until
// cn ends: one ack covers every push before it.
func (d *e2eDevice) acker(cn *e2eConn) {
	defer d.wg.Done()
	for {
		select {
		case <-cn.kick:
		case <-cn.c.Done():
			return
		}
		d.mu.Lock()
		id, acked := cn.lastInbox, cn.acked
		d.mu.Unlock()
		if id == acked {
			continue
		}
		ctx, cancel := context.WithTimeout(d.cl.ctx, 10*time.Second)
		r, err := cn.c.Call(ctx, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: id}})
		cancel()
		if err != nil {
			continue // the connection ended (the next select sees it) or the answer was late (a later push acks again)
		}
		d.mu.Lock()
		if r.GetError() != nil {
			d.stats.ackErrors++
		} else if inboxAfter(id, cn.acked) {
			cn.acked = id
		}
		d.mu.Unlock()
	}
}

// reconnect resumes the device on the first gateway it reaches.
func (d *e2eDevice) reconnect() {
	defer d.wg.Done()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, addr := range d.cl.candidates() {
			if d.isOffline() || d.cl.ctx.Err() != nil {
				return
			}
			err := d.dial(addr)
			d.mu.Lock()
			if err == nil {
				d.stats.reconnects++
			} else {
				d.stats.dialFails++
			}
			d.mu.Unlock()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			d.cl.t.Errorf("%s: could not reconnect within 30s", d)
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-d.cl.ctx.Done():
			return
		}
	}
}

func (d *e2eDevice) isOffline() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.offline
}

// goOffline closes the device's connection for good (until goOnline).
func (d *e2eDevice) goOffline() {
	d.mu.Lock()
	d.offline = true
	cn := d.conn
	d.mu.Unlock()
	if cn != nil {
		cn.c.Close()
	}
	for {
		d.mu.Lock()
		gone := d.conn == nil
		d.mu.Unlock()
		if gone {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goOnline resumes the device on gw.
func (d *e2eDevice) goOnline(t *testing.T, gw *mpimdProc) {
	t.Helper()
	d.mu.Lock()
	d.offline = false
	d.mu.Unlock()
	if err := d.dialRetry(gw.addr); err != nil {
		t.Fatalf("%s: resume on %s: %v", d, gw.name, err)
	}
}

// current returns the device's connection, waiting while it reconnects.
func (d *e2eDevice) current(ctx context.Context) (*e2eConn, error) {
	for {
		d.mu.Lock()
		cn, ch := d.conn, d.connected
		d.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// awaitOther waits until the device has a connection other than cn.
func (d *e2eDevice) awaitOther(ctx context.Context, cn *e2eConn) {
	for ctx.Err() == nil {
		d.mu.Lock()
		cur, ch := d.conn, d.connected
		d.mu.Unlock()
		switch {
		case cur == cn: // the receiver has not noticed the end yet
			time.Sleep(5 * time.Millisecond)
		case cur != nil:
			return
		default:
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
	}
}

// gateway returns the address of the device's gateway ("" while
// disconnected).
func (d *e2eDevice) gateway() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return ""
	}
	return d.conn.gw
}

// allAcked reports whether the device is connected, was pushed something
// on this connection and acknowledged the latest push.
func (d *e2eDevice) allAcked() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil && d.conn.lastInbox != "" && d.conn.acked == d.conn.lastInbox
}

// snapshot returns the device's counts.
func (d *e2eDevice) snapshot() deviceStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// shown returns the events on the device's screen, in order.
func (d *e2eDevice) shown() []shownEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.screen)
}

// do sends a request on the device's connection and returns the answer,
// which may be an error response; a connection failure fails the test.
func (d *e2eDevice) do(t *testing.T, req any) *mpimv1.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.cl.ctx, 30*time.Second)
	defer cancel()
	cn, err := d.current(ctx)
	if err != nil {
		t.Fatalf("%s: not connected: %v", d, err)
	}
	r, err := cn.c.Call(ctx, req)
	if err != nil {
		t.Fatalf("%s: %T: %v", d, req, err)
	}
	return r
}

// call sends a request on the device's connection; it must succeed.
func (d *e2eDevice) call(t *testing.T, req any) *mpimv1.Response {
	t.Helper()
	r := d.do(t, req)
	if e := r.GetError(); e != nil {
		t.Fatalf("%s: %T: %v", d, req, e)
	}
	return r
}

// eventually repeats req on the device's connection until check accepts the
// answer: queries read the read model, which follows the log.
func (d *e2eDevice) eventually(t *testing.T, what string, req any, check func(*mpimv1.Response) bool) *mpimv1.Response {
	t.Helper()
	var last *mpimv1.Response
	waitUntil(t, d.String()+": "+what, func() bool {
		r := d.do(t, req)
		// The read model may not hold the thing yet (a group just created
		// answers not_found until the projector has written it).
		if e := r.GetError(); e != nil {
			if e.GetCode() == "not_found" {
				return false
			}
			t.Fatalf("%s: %T: %v", d, req, e)
		}
		last = r
		return check(last)
	})
	return last
}

// sentMsg is a message whose send the server acknowledged.
type sentMsg struct {
	key     msgKey
	eventID string
	seq     uint64
	to      []*e2eUser // every member of the conversation, the sender included
}

// sendStats count what senders went through. They are safe for concurrent
// use through count; read them once the senders are done.
type sendStats struct {
	mu          sync.Mutex
	acked       int
	retries     int // sends repeated with the same client message id
	duplicates  int // answered with duplicate: the first attempt had been appended
	rateLimited int
	failed      int // answered unavailable or conflict (then retried with the same client message id)
}

func (s *sendStats) count(f func(s *sendStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// send sends a text message with clientMsgID until the server acknowledges
// it: across reconnects, and when rate limited, it sends again with the same
// client message id. to are the members of the conversation.
func (d *e2eDevice) send(ctx context.Context, req *mpimv1.SendRequest, to []*e2eUser, st *sendStats) (sentMsg, error) {
	for {
		cn, err := d.current(ctx)
		if err != nil {
			return sentMsg{}, fmt.Errorf("%s: send %s: %w", d, req.GetClientMsgId(), err)
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		r, err := cn.c.Call(cctx, &mpimv1.ClientFrame_Send{Send: req})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return sentMsg{}, fmt.Errorf("%s: send %s: %w", d, req.GetClientMsgId(), err)
			}
			// No answer: the connection ended (or the answer is late).
			// Retry with the same client message id, on the next
			// connection if this one is gone.
			st.count(func(s *sendStats) { s.retries++ })
			select {
			case <-cn.c.Done():
				d.awaitOther(ctx, cn)
			default:
			}
			continue
		}
		if e := r.GetError(); e != nil {
			switch e.GetCode() {
			case "rate_limited":
				st.count(func(s *sendStats) { s.rateLimited++ })
				time.Sleep(time.Duration(max(e.GetRetryAfterMs(), 1)) * time.Millisecond)
				continue
			case "unavailable", "conflict":
				st.count(func(s *sendStats) { s.retries++; s.failed++ })
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return sentMsg{}, fmt.Errorf("%s: send %s: %s: %s", d, req.GetClientMsgId(), e.GetCode(), e.GetMessage())
		}
		res := r.GetSend()
		st.count(func(s *sendStats) {
			s.acked++
			if res.GetDuplicate() {
				s.duplicates++
			}
		})
		return sentMsg{key: msgKey{conv: res.GetConversationId(), sender: d.user.id, clientMsgID: req.GetClientMsgId()},
			eventID: string(res.GetEventId()), seq: res.GetSeq(), to: to}, nil
	}
}

// toUser and toGroup are send requests.
func toUser(u *e2eUser, clientMsgID string) *mpimv1.SendRequest {
	return &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: u.id}, ClientMsgId: clientMsgID, Text: "hi " + clientMsgID}
}

func toGroup(g, clientMsgID string) *mpimv1.SendRequest {
	return &mpimv1.SendRequest{To: &mpimv1.SendRequest_GroupId{GroupId: g}, ClientMsgId: clientMsgID, Text: "hi " + clientMsgID}
}

// ledger collects acknowledged sends from several senders.
type ledger struct {
	mu   sync.Mutex
	msgs []sentMsg
}

func (l *ledger) add(m sentMsg) {
	l.mu.Lock()
	l.msgs = append(l.msgs, m)
	l.mu.Unlock()
}

func (l *ledger) all() []sentMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// deliveryAudit is what the devices show of the acknowledged sends.
type deliveryAudit struct {
	checked    int // (acknowledged message, recipient device) pairs
	missing    int // acknowledged but not shown
	twice      int // shown more than once (under different event ids)
	mismatched int // shown with another event id or seq than acknowledged
	unacked    int // messages shown that no acknowledged send accounts for
	stats      deviceStats
	details    []string
}

func (a *deliveryAudit) detail(format string, args ...any) {
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

// ok reports whether every acknowledged message is shown exactly once, as
// acknowledged, in order, on every device of every member.
func (a deliveryAudit) ok() bool {
	return a.missing == 0 && a.twice == 0 && a.mismatched == 0 && a.unacked == 0 && a.stats.outOfOrder == 0 && a.stats.gaps == 0
}

func (a deliveryAudit) String() string {
	return fmt.Sprintf("%d deliveries checked: %d acked but never shown, %d shown twice after de-duplication, %d shown unlike acked, "+
		"%d shown but never acked, %d out of order, %d gaps; %d pushes, %d duplicate pushes before de-duplication (%d marked resend), %d reconnects (%d failed attempts), %d ack errors%s",
		a.checked, a.missing, a.twice, a.mismatched, a.unacked, a.stats.outOfOrder, a.stats.gaps, a.stats.pushes, a.stats.dupPushes,
		a.stats.resends, a.stats.reconnects, a.stats.dialFails, a.stats.ackErrors, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

// audit checks sent against what devs show: a message counts for the
// devices of the users it was sent to.
func audit(sent []sentMsg, devs []*e2eDevice) deliveryAudit {
	var a deliveryAudit
	acked := make(map[msgKey]bool, len(sent))
	for _, m := range sent {
		acked[m.key] = true
	}
	for _, d := range devs {
		d.mu.Lock()
		a.stats.add(d.stats)
		for _, p := range d.problems {
			a.detail("%s: %s", d, p)
		}
		for _, m := range sent {
			if !slices.Contains(m.to, d.user) {
				continue
			}
			a.checked++
			idx := d.byMsg[m.key]
			switch {
			case len(idx) == 0:
				a.missing++
				a.detail("%s: %s (seq %d) never shown", d, m.key.clientMsgID, m.seq)
				continue
			case len(idx) > 1:
				a.twice++
				a.detail("%s: %s shown %d times", d, m.key.clientMsgID, len(idx))
			}
			if s := d.screen[idx[0]]; s.eventID != m.eventID || s.seq != m.seq {
				a.mismatched++
				a.detail("%s: %s shown as seq %d, acked as seq %d", d, m.key.clientMsgID, s.seq, m.seq)
			}
		}
		for k := range d.byMsg {
			if !acked[k] {
				a.unacked++
				a.detail("%s: %s shown, never acked", d, k.clientMsgID)
			}
		}
		d.mu.Unlock()
	}
	return a
}

// waitDelivered waits until every message of sent is shown on devs (or
// the wait times out), and returns the final audit.
func waitDelivered(t *testing.T, what string, sent []sentMsg, devs []*e2eDevice) deliveryAudit {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		a := audit(sent, devs)
		if a.missing == 0 {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not delivered within 45s: %v", what, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inboxAfter reports whether inbox id a comes after b ("" is before
// everything).
func inboxAfter(a, b string) bool {
	if b == "" {
		return a != ""
	}
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ams, _ := strconv.ParseUint(am, 10, 64)
	bms, _ := strconv.ParseUint(bm, 10, 64)
	if ams != bms {
		return ams > bms
	}
	asq, _ := strconv.ParseUint(as, 10, 64)
	bsq, _ := strconv.ParseUint(bs, 10, 64)
	return asq > bsq
}
