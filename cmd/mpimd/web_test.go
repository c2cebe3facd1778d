package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The web chat served by a real gateway at "/", driven in headless Chromium
// (the harness is web_harness_test.go). Each test runs its own projector,
// gateway and browser; the users are tabs of that browser.

// TestWebChatTwoUsers: A opens a conversation with B by username. Bad input
// is refused with a visible error (an empty and an oversized message);
// markup in a message is shown as literal text and its handler never runs.
// B sees A's messages live, A sees B typing, A sees that B read the
// messages (read receipt), and a message A recalls is marked recalled on
// B's screen.
func TestWebChatTwoUsers(t *testing.T) {
	st := startWebStack(t)
	checkWebAssets(t, st.base)
	p := startWebPair(t, st)
	a, b, userA, userB := p.a, p.b, p.userA, p.userB
	// The read model follows the log within a moment: findUser may answer
	// not_found right after a registration, so B opens the chat with A
	// after A's registration had the time to land.
	b.openChat(userA)
	a.openChat(userB)

	// An empty and an oversized message are refused client-side, with an
	// error on the screen and nothing sent.
	a.run("send an empty message",
		chromedp.SetValue("#msg-input", "   ", chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery))
	a.waitFor("the empty message error", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('empty')`)
	oversized := strings.Repeat("é", 9000) // 18,000 bytes > 16 KiB
	a.run("send an oversized message",
		chromedp.SetValue("#msg-input", oversized, chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery))
	a.waitFor("the oversized message error", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('too long')`)
	var kept int
	a.eval("read the composer", `document.getElementById('msg-input').value.length`, &kept)
	if n := len(a.texts()); n != 0 || kept != len([]rune(oversized)) {
		t.Fatalf("A: after refused sends %d messages are shown and the composer holds %d characters; want 0 and the oversized text kept", n, kept)
	}

	const evil = `<img src=x onerror="window.__xss=1">`
	a.send("hello")
	a.send(evil)
	b.waitFor("A's two messages", `document.querySelectorAll('#msg-list .msg .text').length === 2`)
	if texts := b.texts(); len(texts) != 2 || texts[0] != "hello" || texts[1] != evil {
		t.Fatalf("B sees %q, want [hello %s]", texts, evil)
	}
	for _, p := range []*webTab{a, b} {
		var xss string
		var imgs int
		p.eval("check the markup is inert", `typeof window.__xss`, &xss)
		p.eval("count images", `document.querySelectorAll('#msg-list img').length`, &imgs)
		if xss != "undefined" || imgs != 0 {
			t.Errorf("%s: window.__xss is %s and %d img elements in the messages: the markup was not inert", p.name, xss, imgs)
		}
	}

	// B has the conversation open, so B read both: A gets the receipt.
	a.waitFor("the read receipt of A's messages", `document.querySelectorAll('#msg-list .msg.mine.read').length === 2 && document.getElementById('receipt').textContent === 'read up to #2'`)

	// B types; A sees it. The indicator lasts while B keeps typing (it
	// goes a few seconds after the last key), so B types until A sees it.
	typing := `document.getElementById('typing').textContent === ` + jsString(userB+" is typing…")
	for deadline := time.Now().Add(webWait); ; {
		b.run("type", chromedp.SendKeys("#msg-input", "typing ", chromedp.ByQuery))
		if a.holds(typing, time.Second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A never saw B typing within %s\n\tpage: %s", webWait, a.state())
		}
	}
	b.send("typing a reply")
	a.waitFor("B's reply", webHasMessage("typing a reply", false))
	a.waitFor("the typing indicator to go when the message came", `document.getElementById('typing').textContent === ''`)

	// A recalls a message; B sees it recalled.
	a.send("oops, wrong chat")
	b.waitFor("the message to recall", webHasMessage("oops, wrong chat", false))
	var seq string
	a.eval("find the message", `Array.from(document.querySelectorAll('#msg-list .msg.mine')).find((m) => m.querySelector('.text').textContent === 'oops, wrong chat').dataset.seq`, &seq)
	a.click("recall", `#msg-list .msg[data-seq="`+seq+`"] button.recall`)
	for _, p := range []*webTab{b, a} {
		p.waitFor("the recalled message to be marked", `(() => { const m = document.querySelector('#msg-list .msg[data-seq="`+seq+`"]');
			return m && m.classList.contains('recalled') && m.querySelector('.text').textContent === 'message recalled'; })()`)
		if texts := p.texts(); strings.Contains(strings.Join(texts, "\n"), "oops") {
			t.Errorf("%s still shows the recalled text: %q", p.name, texts)
		}
	}
}

// TestWebChatFriendsGroupsUnread: A asks B to be friends and B accepts, all
// through the page; A creates a group with B, adds C, and a message in it
// reaches B. A message in a conversation B does not have open shows an
// unread badge, which clears when B opens it. The screenshot artifact is the
// group conversation.
func TestWebChatFriendsGroupsUnread(t *testing.T) {
	st := startWebStack(t)
	p := startWebPair(t, st)
	ctx, a, b, suffix, userA, userB := p.ctx, p.a, p.b, p.suffix, p.userA, p.userB
	userC := "carol" + suffix
	c := webAPIRegister(t, ctx, st.ws, userC)
	c.findUser(ctx, userA) // the registrations reached the read model
	c.findUser(ctx, userB)

	// Friend request: sent by A, accepted by B.
	webBefriend(a, b, userA, userB)

	// A group with A and B, created through the page; C is added to it.
	group := "crew" + suffix
	a.createGroup(group, userB)
	a.submit("add C", "#member-form", "#member-user", userC)
	a.waitFor("C among the members", `document.getElementById('members').textContent.includes(`+jsString(userC)+`)`)
	b.waitFor("the group in B's list", `Array.from(document.querySelectorAll('#groups li'), (e) => e.textContent).includes(`+jsString(group)+`)`)
	b.click("open the group", `#groups li.group`)
	b.waitFor("the group to open", `document.getElementById('conv-title').textContent === `+jsString(group))
	b.waitFor("all three members", `['`+userA+`', '`+userB+`', '`+userC+`'].every((n) => document.getElementById('members').textContent.includes(n))`)
	a.send("welcome to the crew")
	b.waitFor("the group message", webHasMessage("welcome to the crew", false))
	b.send("glad to be here")
	a.waitFor("B's group message", webHasMessage("glad to be here", false))

	// Unread: B stays in the group while A writes to B directly.
	a.click("open the chat with B from the friend list", `#friends li.friend span.name`)
	a.waitFor("the chat with B", `document.getElementById('conv-title').textContent === `+jsString(userB))
	a.send("psst, one")
	a.send("psst, two")
	b.waitFor("an unread badge of 2 on A's conversation", webBadge(userA)+` === '2' && document.title === '(2) mpim chat'`)
	if texts := b.texts(); strings.Contains(strings.Join(texts, "\n"), "psst") {
		t.Fatalf("B's open group conversation shows the direct messages: %q", texts)
	}
	b.screenshot() // the group conversation, with the unread badge in the list
	b.clickConv(userA)
	b.waitFor("the direct messages", webHasMessage("psst, one", false)+` && `+webHasMessage("psst, two", false))
	b.waitFor("the badge to clear", webBadge(userA)+` === '' && document.title === 'mpim chat'`)
	a.waitFor("the read receipt", `document.getElementById('receipt').textContent === 'read up to #2'`)
}

// TestWebChatEmbedded: the page served by `mpimd all` with no
// configuration (in-memory Redis and MySQL stand-ins): two users register,
// chat both ways and see each other's messages live.
func TestWebChatEmbedded(t *testing.T) {
	st := startEmbeddedWebStack(t)
	checkWebAssets(t, st.base)
	p := startWebPair(t, st)
	a, b, userA, userB := p.a, p.b, p.userA, p.userB
	a.openChat(userB)
	a.send("hello from the embedded mode")
	b.openChat(userA)
	b.waitFor("A's message", webHasMessage("hello from the embedded mode", false))
	b.send("and back")
	a.waitFor("B's reply", webHasMessage("and back", false))
	webBefriend(a, b, userA, userB)
}

// webPair is a browser on a web stack with two tabs, A and B, each
// registered as a fresh user.
type webPair struct {
	ctx                  context.Context // bounds the test's browsing
	a, b                 *webTab
	suffix, userA, userB string
}

func startWebPair(t *testing.T, st *webStack) *webPair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	br := startWebBrowser(t, ctx, st.base)
	p := &webPair{ctx: ctx, a: br.tab("A"), b: br.tab("B"), suffix: webSuffix()}
	p.userA, p.userB = "alice"+p.suffix, "bob"+p.suffix
	p.a.register(p.userA)
	p.b.register(p.userB)
	return p
}

// createGroup creates a group named name with member through the page and
// waits until it is open with member listed.
func (p *webTab) createGroup(name, member string) {
	p.t.Helper()
	p.run("create group "+name,
		chromedp.SetValue("#group-name", name, chromedp.ByQuery),
		chromedp.SetValue("#group-members", member, chromedp.ByQuery),
		chromedp.Click("#group-btn", chromedp.ByQuery))
	p.waitFor("group "+name+" to open", `document.getElementById('conv-title').textContent === `+jsString(name)+` && !document.getElementById('group-bar').hidden`)
	p.waitFor(member+" among the members", `document.getElementById('members').textContent.includes(`+jsString(member)+`)`)
}

// webBefriend has a (userA) ask b (userB) to be friends through the page,
// and b accept.
func webBefriend(a, b *webTab, userA, userB string) {
	a.run("ask B to be friends",
		chromedp.SetValue("#friend-user", userB, chromedp.ByQuery),
		chromedp.Click("#friend-btn", chromedp.ByQuery))
	a.waitFor("the outgoing request", `Array.from(document.querySelectorAll('#requests li.outgoing'), (e) => e.textContent).includes(`+jsString("asked "+userB)+`)`)
	b.waitFor("A's friend request", `Array.from(document.querySelectorAll('#requests li.incoming span'), (e) => e.textContent).includes(`+jsString(userA+" wants to be friends")+`)`)
	b.click("accept", "#requests li.incoming button.accept")
	b.waitFor(userA+" in the friend list", webFriendListed(userA)+` && document.querySelectorAll('#requests li').length === 0`)
	a.waitFor(userB+" in the friend list", webFriendListed(userB)+` && document.querySelectorAll('#requests li').length === 0`)
}

// webFriendListed is the expression that name is in the friend list.
func webFriendListed(name string) string {
	return `Array.from(document.querySelectorAll('#friends li.friend span.name'), (e) => e.textContent).includes(` + jsString(name) + `)`
}

// TestWebChatEditBlockRenameLeave: A edits a message and B sees the new
// text marked edited; A blocks B (B's messages are refused with a visible
// error), then unblocks. In a group of A's, A adds and removes C; B may not
// rename it (a visible forbidden error) until A makes B an admin; B
// leaves, and the group goes from B's lists and from A's member list.
func TestWebChatEditBlockRenameLeave(t *testing.T) {
	st := startWebStack(t)
	p := startWebPair(t, st)
	a, b, userA, userB := p.a, p.b, p.userA, p.userB
	webBefriend(a, b, userA, userB)

	// Edit.
	a.click("open the chat with B", `#friends li.friend span.name`)
	a.waitFor("the chat with B", `document.getElementById('conv-title').textContent === `+jsString(userB))
	a.send("frist draft")
	b.openChat(userA)
	b.waitFor("A's message", webHasMessage("frist draft", false))
	var seq string
	a.eval("find the message", `document.querySelector('#msg-list .msg.mine').dataset.seq`, &seq)
	a.click("edit", `#msg-list .msg[data-seq="`+seq+`"] button.edit`)
	a.waitFor("the text in the composer", `document.getElementById('msg-input').value === 'frist draft' && document.getElementById('send-btn').textContent === 'Save'`)
	a.run("save the edit",
		chromedp.SetValue("#msg-input", "first draft", chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery))
	edited := `(() => { const m = document.querySelector('#msg-list .msg[data-seq="` + seq + `"]');
		return m && m.querySelector('.text').textContent === 'first draft' && m.querySelector('.time').textContent.includes('(edited)'); })()`
	b.waitFor("the edited message", edited)
	a.waitFor("the edited message", edited+` && document.getElementById('send-btn').textContent === 'Send'`)

	// Block and unblock.
	a.click("block B", `#friends li.friend button.block`)
	a.waitFor("B in the block list, not among friends", `document.querySelectorAll('#blocked li.blocked').length === 1 && !`+webFriendListed(userB))
	b.run("send to A while blocked",
		chromedp.SetValue("#msg-input", "are you there?", chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery))
	b.waitFor("the blocked error", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('blocked')`)
	a.click("unblock B", `#blocked li.blocked button.unblock`)
	a.waitFor("the block list to empty", `document.querySelectorAll('#blocked li').length === 0`)

	// A group: renamed by A, left by B.
	group := "crew" + p.suffix
	a.createGroup(group, userB)
	b.waitFor("the group in B's list", `Array.from(document.querySelectorAll('#groups li'), (e) => e.textContent).includes(`+jsString(group)+`)`)
	// C joins and is removed by A.
	userC := "carol" + p.suffix
	c := webAPIRegister(t, p.ctx, st.ws, userC)
	idC := c.findUser(p.ctx, userC) // the registration reached the read model
	a.submit("add C", "#member-form", "#member-user", userC)
	a.waitFor("C among the members", `document.querySelector('#members .member[data-user="`+idC+`"]') !== null`)
	a.click("remove C", `#members .member[data-user="`+idC+`"] button.kick`)
	a.waitFor("C gone from the members", `document.querySelector('#members .member[data-user="`+idC+`"]') === null && document.getElementById('members').textContent.includes(`+jsString(userB)+`)`)
	// B may not rename until A makes B an admin.
	b.click("open the group", `#groups li.group`)
	b.waitFor("the group to open", `document.getElementById('conv-title').textContent === `+jsString(group)+` && !document.getElementById('group-bar').hidden`)
	renamed := group + " renamed"
	b.submit("rename the group as a member", "#rename-form", "#rename-name", renamed)
	b.waitFor("the forbidden error", `!document.getElementById('error').hidden && document.getElementById('error').textContent.includes('forbidden')`)
	var idB string
	a.eval("find B among the members", `Array.from(document.querySelectorAll('#members .member')).find((e) => e.firstChild.textContent === `+jsString(userB)+`).dataset.user`, &idB)
	a.click("make B an admin", `#members .member[data-user="`+idB+`"] button.promote`)
	a.waitFor("the notice", `document.getElementById('notice').textContent.includes('is an admin now')`)
	b.submit("rename the group as an admin", "#rename-form", "#rename-name", renamed)
	b.waitFor("the new name in B's list", `Array.from(document.querySelectorAll('#groups li'), (e) => e.textContent).includes(`+jsString(renamed)+`)`)
	a.waitFor("the new title", `document.getElementById('conv-title').textContent === `+jsString(renamed))
	b.waitFor("the new title", `document.getElementById('conv-title').textContent === `+jsString(renamed))
	b.click("leave", `#leave-btn`)
	b.waitFor("the group gone from B's lists", `document.querySelectorAll('#groups li').length === 0 && document.getElementById('group-bar').hidden`)
	a.waitFor("B gone from the members", `document.getElementById('members').textContent !== '' && !document.getElementById('members').textContent.includes(`+jsString(userB)+`)`)
}

// TestWebChatHistoryTabsRestart: C sends more than a page of messages to
// A; a tab A opens afterwards shows the newest page and loads the older ones
// when scrolled to the top. Two tabs of A (two devices) show the same new
// messages, each other's included, and reading in one clears the unread
// badge in the other. When the gateway is killed and restarted, both tabs
// reconnect by themselves; a message typed while it was down is sent once
// the connection is back, and shown once in each tab.
func TestWebChatHistoryTabsRestart(t *testing.T) {
	st := startWebStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	br := startWebBrowser(t, ctx, st.base)
	suffix := webSuffix()
	userA, userC := "alice"+suffix, "carol"+suffix
	a1 := br.tab("A/tab1")
	a1.register(userA)
	c := webAPIRegister(t, ctx, st.ws, userC)
	idA := c.findUser(ctx, userA)
	const n = 45 // more than a page (30)
	var conv string
	for i := 1; i <= n; i++ {
		conv = c.sendTo(ctx, idA, fmt.Sprintf("old %02d", i))
	}
	c.waitHistory(ctx, conv, n)
	// The first tab got them live: one unread badge for all.
	a1.waitFor("the unread badge", webBadge(userC)+fmt.Sprintf(` === '%d'`, n))

	// A second tab of A logs in (a new device, no pushes of the past): the
	// newest page, then the older messages on scrolling up.
	a2 := br.tab("A/tab2")
	a2.login(userA)
	a2.clickConv(userC)
	a2.waitFor("the newest page", `(() => { const t = `+webMessageTexts+`; return t.length === 30 && t[0] === 'old 16' && t[29] === 'old 45'; })()`)
	a2.waitFor("the load-older control", `!document.getElementById('load-older').hidden`)
	a2.run("scroll to the top", chromedp.Evaluate(`document.getElementById('messages').scrollTop = 0`, nil))
	a2.waitFor("all the messages", fmt.Sprintf(`%s.length === %d`, webMessageTexts, n))
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("old %02d", i+1)
	}
	if got := a2.texts(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("A/tab2 after scrolling back shows %q, want old 01..old %02d in order", got, n)
	}
	a2.waitFor("nothing older to load", `document.getElementById('load-older').hidden`)
	// Reading in tab 2 clears the badge in tab 1 (the read is pushed to
	// every device of A).
	a1.waitFor("the badge to clear after tab 2 read", webBadge(userC)+` === ''`)

	// A new message reaches both tabs; what one tab sends shows in the
	// other as A's own.
	c.sendTo(ctx, idA, "live one")
	a2.waitFor("the live message", webHasMessage("live one", false))
	a1.clickConv(userC)
	a1.waitFor("the live message", webHasMessage("live one", false))
	a1.send("sent from tab 1")
	a2.waitFor("tab 1's message as A's own", webHasMessage("sent from tab 1", true))
	a2.send("sent from tab 2")
	a1.waitFor("tab 2's message as A's own", webHasMessage("sent from tab 2", true))
	for _, p := range []*webTab{a1, a2} {
		got := p.texts()
		tail := got[max(0, len(got)-3):]
		if strings.Join(tail, ",") != "live one,sent from tab 1,sent from tab 2" {
			t.Errorf("%s ends with %q, want [live one, sent from tab 1, sent from tab 2] once each", p.name, tail)
		}
	}

	// The gateway goes down; the tabs say so and reconnect once it is back.
	st.killGateway()
	for _, p := range []*webTab{a1, a2} {
		p.waitFor("the disconnection to show", `document.getElementById('status').textContent.includes('reconnecting')`)
	}
	a1.run("send while disconnected",
		chromedp.SetValue("#msg-input", "typed while down", chromedp.ByQuery),
		chromedp.Click("#send-btn", chromedp.ByQuery))
	a1.waitFor("the message to wait", `document.querySelector('#msg-list .msg.pending') !== null`)
	st.restartGateway()
	for _, p := range []*webTab{a1, a2} {
		p.waitFor("the connection to come back", `document.getElementById('status').textContent === 'connected'`)
	}
	a1.waitFor("the waiting message to be sent", `!document.querySelector('#msg-list .msg.pending') && `+webHasMessage("typed while down", true))
	a2.waitFor("the message typed in tab 1 while down", webHasMessage("typed while down", true))
	c.reconnect(ctx, st.ws)
	c.sendTo(ctx, idA, "after the restart")
	want = append(want, "live one", "sent from tab 1", "sent from tab 2", "typed while down", "after the restart")
	for _, p := range []*webTab{a1, a2} {
		p.waitFor("the message sent after the restart", webHasMessage("after the restart", false))
		if got := p.texts(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s shows %q, want old 01..old %02d and the later messages, each once, in order", p.name, got, n)
		}
	}
}

// checkWebAssets checks the page's files are served with their content types
// and the Content-Security-Policy.
func checkWebAssets(t *testing.T, base string) {
	t.Helper()
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/devices.js": "text/javascript", "/style.css": "text/css"} {
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
