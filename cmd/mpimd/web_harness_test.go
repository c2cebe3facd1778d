package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// This file is the harness of the web chat tests (web_test.go): a real
// projector and gateway, one headless Chromium per test whose tabs are the
// users (the page keeps its session per tab, so each tab is a device of its
// own), and a protocol client to set up data quickly.

// chromiumPath is Debian's chromium, which scripts/services.sh installs.
const chromiumPath = "/usr/bin/chromium"

// webWait bounds every wait for the page; the machine may be slow and
// shared, so it is generous, and a failure says what was awaited.
const webWait = 30 * time.Second

const webPassword = "correct horse battery"

// webStack is a projector and a gateway serving the web chat.
type webStack struct {
	t      *testing.T
	base   string // http://host:port of the gateway
	ws     string // its WebSocket URL
	bin    string
	logDir string
	common []string
	gw     *mpimdProc
	gwRuns int // gateways started
}

func startWebStack(t *testing.T) *webStack {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (%v): run scripts/services.sh (as root) to install Debian's chromium", chromiumPath, err)
	}
	common := clusterArgs(t)
	bin := buildBinary(t)
	logDir := t.TempDir()
	s := &webStack{t: t, bin: bin, logDir: logDir, common: common}
	proj := startMpimd(t, bin, logDir, "projector", append([]string{"projector"}, append(common, "--member-id", "p0")...)...)
	s.startGateway(testsvc.FreeAddr(t))
	s.waitReady(proj, s.gw)
	s.base, s.ws = "http://"+s.gw.addr, "ws://"+s.gw.addr+"/ws"
	return s
}

// startEmbeddedWebStack serves the web chat from `mpimd all` on its
// embedded stand-ins: what `go run ./cmd/mpimd all` gives a first-time user.
func startEmbeddedWebStack(t *testing.T) *webStack {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (%v): run scripts/services.sh (as root) to install Debian's chromium", chromiumPath, err)
	}
	s := &webStack{t: t, bin: buildBinary(t), logDir: t.TempDir()}
	s.gw = startMpimd(t, s.bin, s.logDir, "embedded", "all", "--gateway-id", "gw-embedded", "--listen", testsvc.FreeAddr(t), "--log-level", "warn")
	s.waitReady(s.gw)
	s.base, s.ws = "http://"+s.gw.addr, "ws://"+s.gw.addr+"/ws"
	return s
}

// startGateway starts a gateway (with a new id) listening on addr.
func (s *webStack) startGateway(addr string) {
	s.gwRuns++
	id := fmt.Sprintf("gw-web%d", s.gwRuns)
	s.gw = startMpimd(s.t, s.bin, s.logDir, id, append([]string{"gateway"}, append(s.common, "--gateway-id", id, "--listen", addr)...)...)
}

func (s *webStack) waitReady(procs ...*mpimdProc) {
	s.t.Helper()
	for _, p := range procs {
		waitUntil(s.t, p.name+" ready", func() bool {
			if !p.alive() {
				s.t.Fatalf("%s exited at start-up: %v", p.name, p.err)
			}
			return httpGet(p.ops, "/readyz") == http.StatusOK && (p.addr == "" || httpGet(p.addr, "/dispatch") == http.StatusOK)
		})
	}
}

// killGateway kills the gateway with SIGKILL: every connection drops.
func (s *webStack) killGateway() { s.gw.kill(s.t) }

// restartGateway starts a new gateway on the killed one's address, where
// the pages find it again.
func (s *webStack) restartGateway() {
	s.t.Helper()
	s.startGateway(s.gw.addr)
	s.waitReady(s.gw)
}

// webBrowser is one headless Chromium; each tab is a page of its own.
type webBrowser struct {
	t     *testing.T
	base  string
	first context.Context // the browser's first tab
	used  bool            // whether the first tab was handed out
}

// startWebBrowser starts Chromium with a fresh profile; it ends with the test
// or when ctx ends.
func startWebBrowser(t *testing.T, ctx context.Context, base string) *webBrowser {
	t.Helper()
	// Chromium's helper processes may still write to the profile for a
	// moment after the browser was stopped: remove it leniently (t.TempDir
	// would fail the test).
	profile, err := os.MkdirTemp("", "mpim-webchat-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Every tab is a user at the screen: none is throttled as a
		// background tab.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1100, 700),
		chromedp.UserDataDir(profile),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	first, cancelFirst := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelFirst)
	if err := chromedp.Run(first); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return &webBrowser{t: t, base: base, first: first}
}

// webTab is one browser tab: one device of one user.
type webTab struct {
	t    *testing.T
	name string
	ctx  context.Context
	user string // the username logged in
}

// tab opens a new tab on the web chat.
func (b *webBrowser) tab(name string) *webTab {
	b.t.Helper()
	ctx := b.first
	if b.used {
		// A window of its own: a background tab of a window is hidden
		// (document.hidden), and the page does not mark what a hidden tab
		// shows as read; every user here is looking at their screen.
		var id target.ID
		err := chromedp.Run(b.first, chromedp.ActionFunc(func(ctx context.Context) error {
			var err error
			id, err = target.CreateTarget("about:blank").WithNewWindow(true).Do(cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser))
			return err
		}))
		if err != nil {
			b.t.Fatalf("opening a window for %s: %v", name, err)
		}
		var cancel context.CancelFunc
		ctx, cancel = chromedp.NewContext(b.first, chromedp.WithTargetID(id))
		b.t.Cleanup(cancel)
		// The first Run attaches to the tab and ties it to its context: no
		// timeout here, or the tab would be closed when it ran out.
		if err := chromedp.Run(ctx); err != nil {
			b.t.Fatalf("attaching to the window of %s: %v", name, err)
		}
	}
	b.used = true
	p := &webTab{t: b.t, name: name, ctx: ctx}
	p.run("open the page", chromedp.Navigate(b.base+"/"), chromedp.WaitVisible("#auth-form", chromedp.ByQuery))
	return p
}

// webPageState is what the page shows, for failure messages.
const webPageState = `(() => {
  const q = (s) => document.querySelector(s), all = (s) => Array.from(document.querySelectorAll(s), (e) => e.textContent);
  return 'error=' + JSON.stringify(q('#error').hidden ? '' : q('#error').textContent) +
    ' status=' + JSON.stringify(q('#status').textContent) +
    ' title=' + JSON.stringify(q('#conv-title').textContent) +
    ' convs=' + JSON.stringify(Array.from(document.querySelectorAll('#convs li'), (li) => li.textContent)) +
    ' msgs=' + JSON.stringify(all('#msg-list .msg .text').slice(-8)) + ' (' + all('#msg-list .msg').length + ')' +
    ' typing=' + JSON.stringify(q('#typing').textContent) + ' receipt=' + JSON.stringify(q('#receipt').textContent) +
    ' friends=' + JSON.stringify(all('#friends li')) + ' requests=' + JSON.stringify(all('#requests li')) +
    ' groups=' + JSON.stringify(all('#groups li')) + ' members=' + JSON.stringify(q('#members').textContent) +
    ' hidden=' + document.hidden;
})()`

// run runs actions in the tab; on failure the test fails with what the
// page shows.
func (p *webTab) run(what string, actions ...chromedp.Action) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*webWait)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v\n\tpage: %s", p.name, what, err, p.state())
	}
}

func (p *webTab) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	var s string
	if err := chromedp.Run(ctx, chromedp.Evaluate(webPageState, &s)); err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return s
}

// waitFor waits until the JavaScript expression cond is true.
func (p *webTab) waitFor(what, cond string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, webWait)
	defer cancel()
	err := chromedp.Run(ctx, chromedp.Poll(cond, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(webWait)))
	if err != nil {
		p.t.Fatalf("%s: waiting %s for %s: %v\n\tcondition: %s\n\tpage: %s", p.name, webWait, what, err, cond, p.state())
	}
}

// eval evaluates expr into out.
func (p *webTab) eval(what, expr string, out any) {
	p.t.Helper()
	p.run(what, chromedp.Evaluate(expr, out))
}

// register registers user through the page and waits for the chat.
func (p *webTab) register(user string) {
	p.t.Helper()
	p.user = user
	p.run("register "+user,
		chromedp.SendKeys("#auth-user", user, chromedp.ByQuery),
		chromedp.SendKeys("#auth-pass", webPassword, chromedp.ByQuery),
		chromedp.Click("#register-btn", chromedp.ByQuery),
		chromedp.WaitVisible("#main", chromedp.ByQuery))
}

// login logs user in through the page.
func (p *webTab) login(user string) {
	p.t.Helper()
	p.user = user
	p.run("log in as "+user,
		chromedp.Evaluate(`document.getElementById('auth-user').value = ''`, nil),
		chromedp.SendKeys("#auth-user", user, chromedp.ByQuery),
		chromedp.SendKeys("#auth-pass", webPassword, chromedp.ByQuery),
		chromedp.Click("#login-btn", chromedp.ByQuery),
		chromedp.WaitVisible("#main", chromedp.ByQuery))
}

// holds reports whether the JavaScript expression cond becomes true within d.
func (p *webTab) holds(cond string, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Poll(cond, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d))) == nil
}

// openChat opens the direct conversation with peer by username, as a user
// would: again if the name is not found yet (the read model follows a
// fresh registration within a moment).
func (p *webTab) openChat(peer string) {
	p.t.Helper()
	isOpen := `document.getElementById('conv-title').textContent === ` + jsString(peer) + ` && !document.getElementById('msg-input').disabled`
	deadline := time.Now().Add(webWait)
	for {
		p.run("open the chat with "+peer,
			chromedp.SetValue("#open-user", peer, chromedp.ByQuery),
			chromedp.Click("#open-btn", chromedp.ByQuery))
		if p.holds(isOpen, 2*time.Second) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: the conversation with %s did not open within %s\n\tpage: %s", p.name, peer, webWait, p.state())
		}
	}
}

// click clicks the element sel. Lists are redrawn as pushes come in, so
// an element may be replaced between being found and clicked: then it is
// looked up again.
func (p *webTab) click(what, sel string) {
	p.t.Helper()
	var err error
	for range 5 {
		ctx, cancel := context.WithTimeout(p.ctx, webWait)
		err = chromedp.Run(ctx, chromedp.Click(sel, chromedp.ByQuery))
		cancel()
		if err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.t.Fatalf("%s: %s: clicking %s: %v\n\tpage: %s", p.name, what, sel, err, p.state())
}

// submit sets the input sel to value and submits form through the page's
// own submit handler (requestSubmit): unlike a click at coordinates it
// cannot land on another element when a list above re-renders meanwhile.
func (p *webTab) submit(what, form, sel, value string) {
	p.t.Helper()
	var ok bool
	p.run(what, chromedp.Evaluate(`(() => { const i = document.querySelector(`+jsString(sel)+`), f = document.querySelector(`+jsString(form)+`);
		if (!i || !f) return false; i.value = `+jsString(value)+`; f.requestSubmit(); return true; })()`, &ok))
	if !ok {
		p.t.Fatalf("%s: %s: no %s or %s on the page\n\tpage: %s", p.name, what, sel, form, p.state())
	}
}

// clickConv opens the listed conversation titled title.
func (p *webTab) clickConv(title string) {
	p.t.Helper()
	p.waitFor("conversation "+title+" to be listed", webConvItem(title)+` !== undefined`)
	var id string
	p.eval("find conversation "+title, webConvItem(title)+`.dataset.conv`, &id)
	p.click("open conversation "+title, `#convs li[data-conv="`+id+`"]`)
	p.waitFor("conversation "+title+" to open", `document.getElementById('conv-title').textContent === `+jsString(title))
}

// webConvItem is the expression of the conversation list entry titled title.
func webConvItem(title string) string {
	return `Array.from(document.querySelectorAll('#convs li')).find((li) => li.querySelector('.title').textContent === ` + jsString(title) + `)`
}

// webBadge is the expression of the unread badge of the conversation titled
// title (empty without one).
func webBadge(title string) string {
	return `((li) => (li && li.querySelector('.badge')) ? li.querySelector('.badge').textContent : '')(` + webConvItem(title) + `)`
}

// send types text into the composer and sends it; it waits until the
// server acknowledged it (the message is shown, no longer pending).
func (p *webTab) send(text string) {
	p.t.Helper()
	p.run("send "+webAbbrev(text),
		chromedp.SetValue("#msg-input", text, chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery))
	p.waitFor("message "+webAbbrev(text)+" to be sent", `!document.querySelector('#msg-list .msg.pending') && `+webHasMessage(text, true))
}

// webHasMessage is the expression that the open conversation shows text (as
// one's own message if mine).
func webHasMessage(text string, mine bool) string {
	sel := `#msg-list .msg:not(.pending) .text`
	if mine {
		sel = `#msg-list .msg.mine:not(.pending) .text`
	}
	return `Array.from(document.querySelectorAll('` + sel + `'), (e) => e.textContent).includes(` + jsString(text) + `)`
}

// webMessageTexts are the texts of the open conversation, oldest first.
const webMessageTexts = `Array.from(document.querySelectorAll('#msg-list .msg .text'), (e) => e.textContent)`

func (p *webTab) texts() []string {
	p.t.Helper()
	var out []string
	p.eval("read the messages", webMessageTexts, &out)
	return out
}

// screenshot keeps a screenshot of the tab as bench/results/webchat.png.
func (p *webTab) screenshot() {
	p.t.Helper()
	var png []byte
	p.run("screenshot", chromedp.CaptureScreenshot(&png))
	artifact := filepath.Join("..", "..", "bench", "results", "webchat.png")
	if err := os.MkdirAll(filepath.Dir(artifact), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(artifact, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot of %s: bench/results/webchat.png (%d bytes)", p.name, len(png))
}

func webAbbrev(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", s[:40], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`, "\u2028", `\u2028`, "\u2029", `\u2029`).Replace(s) + "'"
}

// webAPIUser is a user driven over the client protocol (to set up data
// quickly): registered and logged in, its pushes drained.
type webAPIUser struct {
	t    *testing.T
	c    *client.Conn
	name string
	id   string
}

func webAPIRegister(t *testing.T, ctx context.Context, ws, name string) *webAPIUser {
	t.Helper()
	u := &webAPIUser{t: t, name: name}
	u.dial(ctx, ws)
	r := u.call(ctx, "register", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: name, Password: webPassword, DisplayName: name}})
	u.id = r.GetRegister().GetUserId()
	u.login(ctx)
	return u
}

// dial opens a connection (its pushes are drained).
func (u *webAPIUser) dial(ctx context.Context, ws string) {
	u.t.Helper()
	c, err := client.Dial(ctx, ws, &client.Options{Encoding: frame.JSON})
	if err != nil {
		u.t.Fatalf("%s: dial %s: %v", u.name, ws, err)
	}
	u.t.Cleanup(func() { c.CloseNow() })
	go func() {
		for {
			if _, err := c.Next(context.Background()); err != nil {
				return
			}
		}
	}()
	u.c = c
}

func (u *webAPIUser) login(ctx context.Context) {
	u.t.Helper()
	u.call(ctx, "login", &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: u.name, Password: webPassword, DeviceId: "api-" + u.name, Platform: "test"}})
}

// reconnect logs in again on a new connection (after a gateway restart).
func (u *webAPIUser) reconnect(ctx context.Context, ws string) {
	u.t.Helper()
	u.c.CloseNow()
	u.dial(ctx, ws)
	u.login(ctx)
}

func (u *webAPIUser) call(ctx context.Context, what string, req any) *mpimv1.Response {
	u.t.Helper()
	cctx, cancel := context.WithTimeout(ctx, webWait)
	defer cancel()
	r, err := u.c.Call(cctx, req)
	if err != nil || r.GetError() != nil {
		u.t.Fatalf("%s: %s: %v %v", u.name, what, err, r.GetError())
	}
	return r
}

// findUser returns the id of username, waiting while the read model
// catches up with a fresh registration.
func (u *webAPIUser) findUser(ctx context.Context, username string) string {
	u.t.Helper()
	deadline := time.Now().Add(webWait)
	for {
		r, err := u.c.Call(ctx, &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: username}})
		if err == nil && r.GetError() == nil {
			return r.GetFindUser().GetUserId()
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s: findUser %s: %v %v", u.name, username, err, r.GetError())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendTo sends text to the direct conversation with user id to and
// returns the conversation's id.
func (u *webAPIUser) sendTo(ctx context.Context, to, text string) string {
	u.t.Helper()
	r := u.call(ctx, "send "+text, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{
		To: &mpimv1.SendRequest_UserId{UserId: to}, ClientMsgId: fmt.Sprintf("%s-%d", u.name, time.Now().UnixNano()), Text: text}})
	return r.GetSend().GetConversationId()
}

// waitHistory waits until the read model has n messages in conversation
// conv.
func (u *webAPIUser) waitHistory(ctx context.Context, conv string, n int) {
	u.t.Helper()
	deadline := time.Now().Add(webWait)
	for {
		r := u.call(ctx, "history", &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, Limit: 1}})
		if msgs := r.GetHistory().GetMessages(); len(msgs) == 1 && msgs[0].GetSeq() >= uint64(n) {
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s: the read model does not have %d messages in %s after %s", u.name, n, conv, webWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// webSuffix makes usernames unique across runs on the same servers.
func webSuffix() string { return fmt.Sprintf("%d", time.Now().UnixNano()%1e9) }
