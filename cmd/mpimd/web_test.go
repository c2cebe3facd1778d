package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mpim/mpim/internal/testsvc"
)

// chromiumPath is Debian's chromium, which scripts/services.sh installs.
const chromiumPath = "/usr/bin/chromium"

// The web chat served by a real gateway at "/", driven in headless Chromium
// by two users: A opens a conversation with B by username and sends a plain
// message and one holding markup; B sees both live, the markup as literal
// text, and the injected handler never runs.
func TestWebChatTwoUsers(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (%v): run scripts/services.sh (as root) to install Debian's chromium", chromiumPath, err)
	}
	d := newDeployment(t)
	servers, root := testsvc.ZooKeeper(t)
	t.Cleanup(func() {
		if err := deleteZKTree(servers, root); err != nil {
			t.Logf("deleting ZooKeeper %s: %v", root, err)
		}
	})
	bin := buildBinary(t)
	logDir := t.TempDir()
	common := d.args("--zookeeper", strings.Join(servers, ","), "--zk-root", root, "--zk-session-timeout", "4s",
		"--partitions", e2ePartitions, "--trim-interval", "0")
	proj := startMpimd(t, bin, logDir, "projector", append([]string{"projector"}, append(common, "--member-id", "p0")...)...)
	gw := startMpimd(t, bin, logDir, "gw-web", append([]string{"gateway"}, append(common, "--gateway-id", "gw-web", "--listen", freeAddr(t))...)...)
	for _, p := range []*mpimdProc{proj, gw} {
		waitUntil(t, p.name+" ready", func() bool {
			if !p.alive() {
				t.Fatalf("%s exited at start-up: %v", p.name, p.err)
			}
			return httpGet(p.ops, "/readyz") == http.StatusOK && (p.addr == "" || httpGet(p.addr, "/dispatch") == http.StatusOK)
		})
	}
	base := "http://" + gw.addr
	checkWebAssets(t, base)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	// One Chromium per user, each with its own profile (a separate browser
	// context in the strongest sense: nothing is shared). Chromium 156 refuses
	// Target.createBrowserContext tabs under chromedp v0.14 ("no browser is open").
	startBrowser := func() context.Context {
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(chromiumPath),
			chromedp.Flag("headless", true),
			chromedp.Flag("no-sandbox", true),
			chromedp.Flag("disable-gpu", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.WindowSize(1100, 700),
			chromedp.UserDataDir(t.TempDir()),
		}
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
		t.Cleanup(cancelAlloc)
		browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
		t.Cleanup(cancelBrowser)
		if err := chromedp.Run(browser); err != nil {
			t.Fatalf("starting chromium: %v", err)
		}
		return browser
	}
	ctxA, ctxB := startBrowser(), startBrowser()

	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	userA, userB := "alice"+suffix, "bob"+suffix
	const password = "correct horse battery"
	const evil = `<img src=x onerror="window.__xss=1">`

	run := func(who string, c context.Context, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(c, actions...); err != nil {
			var shown string
			chromedp.Run(c, chromedp.Evaluate(`document.getElementById('error').textContent + ' | ' + document.getElementById('status').textContent + ' | input=' + document.getElementById('msg-input').value + ' | msgs=' + document.querySelectorAll('#messages .msg').length`, &shown))
			t.Fatalf("%s: %v (page shows: %s)", who, err, shown)
		}
	}
	register := func(user string) []chromedp.Action {
		return []chromedp.Action{
			chromedp.Navigate(base + "/"),
			chromedp.WaitVisible("#auth-form", chromedp.ByQuery),
			chromedp.SendKeys("#auth-user", user, chromedp.ByQuery),
			chromedp.SendKeys("#auth-pass", password, chromedp.ByQuery),
			chromedp.Click("#register-btn", chromedp.ByQuery),
			chromedp.WaitVisible("#main", chromedp.ByQuery),
		}
	}
	openChat := func(peer string) []chromedp.Action {
		return []chromedp.Action{
			chromedp.SendKeys("#open-user", peer, chromedp.ByQuery),
			chromedp.Click("#open-btn", chromedp.ByQuery),
			chromedp.WaitEnabled("#msg-input", chromedp.ByQuery),
			waitJS(`document.getElementById('conv-title').textContent === ` + jsString(peer)),
		}
	}
	send := func(text string) []chromedp.Action {
		return []chromedp.Action{
			chromedp.SetValue("#msg-input", text, chromedp.ByQuery),
			chromedp.Click("#send-btn", chromedp.ByQuery),
			waitJS(`document.getElementById('msg-input').value === ''`),
		}
	}

	run("register A", ctxA, register(userA)...)
	run("register B", ctxB, register(userB)...)
	// The read model follows the log within a moment: B opens the chat once
	// A's username resolves (findUser may answer not_found right after register).
	run("B opens A", ctxB, openChat(userA)...)
	run("A opens B", ctxA, openChat(userB)...)

	// An empty message is rejected client-side.
	run("A sends empty", ctxA,
		chromedp.SetValue("#msg-input", "   ", chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery),
		waitJS(`!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('empty')`),
	)
	run("A sends", ctxA, append(send("hello"), send(evil)...)...)
	run("A sees own", ctxA, waitJS(`document.querySelectorAll('#messages .msg').length === 2`))

	// B, with the conversation open, gets both as pushes.
	var texts []string
	run("B receives", ctxB,
		waitJS(`document.querySelectorAll('#messages .msg .text').length === 2`),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('#messages .msg .text'), e => e.textContent)`, &texts),
	)
	if len(texts) != 2 || texts[0] != "hello" || texts[1] != evil {
		t.Fatalf("B sees %q, want [hello %s]", texts, evil)
	}
	for who, c := range map[string]context.Context{"A": ctxA, "B": ctxB} {
		var xss string
		var imgs int
		run(who+" xss check", c,
			chromedp.Sleep(300*time.Millisecond),
			chromedp.Evaluate(`typeof window.__xss`, &xss),
			chromedp.Evaluate(`document.querySelectorAll('#messages img').length`, &imgs),
		)
		if xss != "undefined" || imgs != 0 {
			t.Errorf("%s: window.__xss is %s and %d img elements in the messages: the markup was not inert", who, xss, imgs)
		}
	}

	var png []byte
	run("screenshot", ctxB, chromedp.CaptureScreenshot(&png))
	shot := filepath.Join(t.TempDir(), "webchat.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	artifact := filepath.Join("..", "..", "bench", "results", "webchat.png")
	if err := os.MkdirAll(filepath.Dir(artifact), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(artifact, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (copied to bench/results/webchat.png)", shot)
}

// checkWebAssets checks the page's files are served with their content types
// and the Content-Security-Policy.
func checkWebAssets(t *testing.T, base string) {
	t.Helper()
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/style.css": "text/css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %s, Content-Type %q; want 200, %s", path, resp.Status, resp.Header.Get("Content-Type"), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != "default-src 'self'; connect-src 'self' ws: wss:" {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if st := httpGet(strings.TrimPrefix(base, "http://"), "/nope.js"); st != http.StatusNotFound {
		t.Errorf("GET /nope.js: %d, want 404", st)
	}
}

// waitJS polls the page until expr is true.
func waitJS(expr string) chromedp.Action {
	return chromedp.Poll(expr, nil, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
