package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/frame"
	"github.com/mpim/mpim/gateway/gatewaytest"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// chatHelp lists the chat commands.
const chatHelp = `commands:
  /to USER               open the direct conversation with USER
  /group NAME USER...    create a group with USERs and open it
  /join GROUPID          join an open group and open its conversation
  /history [N]           show the last N (default 20) messages of the open conversation
  /friends               list friends and pending friend requests
  /add USER              send USER a friend request
  /accept USER           accept USER's friend request
  /devices               list your logged-in devices
  /logout-device DEVICE  log out one of your other devices
  /logout-others         log out every device of yours but this one
  /password              change your password (asks for the new one; logs out your other devices)
  /help                  this list
  /quit                  leave
  anything else          is sent to the open conversation`

func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return chatMain(ctx, args, os.Stdin, stdout, stderr)
}

// chatMain is runChat reading commands from stdin.
func chatMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mpimctl chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gw := fs.String("gateway", "ws://127.0.0.1:8080/ws", "gateway WebSocket URL")
	user := fs.String("user", "", "username to log in as")
	register := fs.Bool("register", false, "register the user first")
	passwordEnv := fs.String("password-env", "MPIM_CHAT_PASSWORD", "environment variable holding the password")
	device := fs.String("device", "", "device id (default mpimctl-<random>)")
	enc := fs.String("encoding", "json", "protocol encoding: json or proto")
	fs.String("config", "", "JSON config file (keys are flag names)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("chat: --user is required")
	}
	password, ok := os.LookupEnv(*passwordEnv)
	if !ok || password == "" {
		return fmt.Errorf("chat: set the password in $%s (or name another variable with --password-env)", *passwordEnv)
	}
	var encoding frame.Encoding
	switch *enc {
	case "json":
		encoding = frame.JSON
	case "proto":
		encoding = frame.Proto
	default:
		return fmt.Errorf("chat: --encoding must be json or proto, got %q", *enc)
	}
	if *device == "" {
		*device = "mpimctl-" + randomHex(4)
	}
	c := &chat{url: *gw, enc: encoding, user: *user, password: password, device: *device,
		out: stdout, names: map[string]string{}, seen: map[string]bool{}, connected: make(chan struct{})}
	return c.run(ctx, *register, stdin)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// chat is one terminal session. When the connection drops (a gateway
// restart, a network failure) it reconnects with backoff and resumes the
// device's session with its token: the server delivers from the device's
// cursor (the last acknowledged push), so nothing sent meanwhile is missed,
// and pushes shown before are recognised by their event id and not shown
// again.
type chat struct {
	url      string
	enc      frame.Encoding
	user     string
	password string // guarded by connMu once the session runs
	device   string

	outMu sync.Mutex
	out   io.Writer

	connMu    sync.Mutex
	cl        *gatewaytest.Client // nil while reconnecting
	connected chan struct{}       // closed while cl is set
	token     string
	heartbeat time.Duration
	goaway    time.Duration // the reconnect delay the server asked for

	mu    sync.Mutex
	me    string            // own user id
	names map[string]string // user id -> username
	seen  map[string]bool   // event ids shown (pushes may be re-sent)
	open  *openConv

	// askingPassword: the next input line is the new password (/password);
	// only the input loop touches it.
	askingPassword bool
}

// Reconnect backoff: the first attempt after firstBackoff (or what a goaway
// asked for), doubling up to maxBackoff, each wait with up to 50% jitter.
const (
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 10 * time.Second
)

// callTimeout bounds a request, the wait for a connection included.
const callTimeout = 15 * time.Second

// sendPatience is how long a message waits for the connection to come back
// before it is given up.
const sendPatience = time.Minute

// openConv is the conversation plain text goes to.
type openConv struct {
	title          string
	conversationID string
}

// printf prints one line of output. Every line passes through termSafe:
// messages, names and error texts come from other users and the server, and
// a control sequence in them must not reach the terminal raw.
func (c *chat) printf(format string, args ...any) {
	line := termSafe(fmt.Sprintf(format, args...))
	c.outMu.Lock()
	defer c.outMu.Unlock()
	fmt.Fprintln(c.out, line)
}

// conn returns the current connection, waiting (until ctx ends) while the
// client reconnects.
func (c *chat) conn(ctx context.Context) (*gatewaytest.Client, error) {
	for {
		c.connMu.Lock()
		cl, ch := c.cl, c.connected
		c.connMu.Unlock()
		if cl != nil {
			return cl, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, errors.New("not connected (the client is reconnecting)")
		}
	}
}

// setConn makes cl the current connection (nil: disconnected).
func (c *chat) setConn(cl *gatewaytest.Client) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	switch {
	case cl != nil && c.cl == nil:
		close(c.connected)
	case cl == nil && c.cl != nil:
		c.connected = make(chan struct{})
	}
	c.cl = cl
}

// call sends a request and turns an error result into an error.
func (c *chat) call(ctx context.Context, req any) (*mpimv1.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	r, err := cl.Call(ctx, req)
	if err != nil {
		return nil, err
	}
	if e := r.GetError(); e != nil {
		return nil, fmt.Errorf("%s: %s", e.GetCode(), e.GetMessage())
	}
	return r, nil
}

// dial opens a connection.
func (c *chat) dial(ctx context.Context) (*gatewaytest.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return gatewaytest.Dial(dctx, c.url, c.enc, nil)
}

// authenticate logs in on cl (token empty) or resumes the session with the
// token; a token the server no longer accepts is replaced by a new login of
// the same device (which keeps its cursor).
func (c *chat) authenticate(ctx context.Context, cl *gatewaytest.Client) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	c.connMu.Lock()
	token, password := c.token, c.password // /password may change it
	c.connMu.Unlock()
	if token != "" {
		r, err := cl.Call(ctx, &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: token}})
		if err != nil {
			return err
		}
		if e := r.GetError(); e == nil {
			s := r.GetResume()
			c.connMu.Lock()
			c.heartbeat = time.Duration(s.GetHeartbeatMs()) * time.Millisecond
			c.connMu.Unlock()
			return nil
		} else if e.GetCode() != "unauthenticated" {
			return fmt.Errorf("resume: %s: %s", e.GetCode(), e.GetMessage())
		}
	}
	r, err := cl.Call(ctx, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: c.user, Password: password, DeviceId: c.device, Platform: "mpimctl"}})
	if err != nil {
		return err
	}
	if e := r.GetError(); e != nil {
		err := fmt.Errorf("login %s: %s: %s", c.user, e.GetCode(), e.GetMessage())
		if e.GetCode() == "bad_credentials" {
			return permanent{err}
		}
		return err
	}
	s := r.GetLogin()
	c.connMu.Lock()
	c.token = s.GetToken()
	c.heartbeat = time.Duration(s.GetHeartbeatMs()) * time.Millisecond
	c.connMu.Unlock()
	c.mu.Lock()
	c.me = s.GetUserId()
	c.names[c.me] = s.GetProfile().GetUsername()
	c.mu.Unlock()
	if token == "" {
		c.printf("logged in as %s (%s) on %s; /help lists the commands", s.GetProfile().GetUsername(), c.me, c.device)
	}
	return nil
}

// permanent is an error reconnecting does not cure.
type permanent struct{ error }

func (c *chat) run(ctx context.Context, register bool, in io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cl, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("chat: dial %s: %w", c.url, err)
	}
	if register {
		rctx, rcancel := context.WithTimeout(ctx, callTimeout)
		r, err := cl.Call(rctx, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: c.user, Password: c.password, DisplayName: c.user}})
		rcancel()
		if err == nil && r.GetError() != nil {
			err = fmt.Errorf("%s: %s", r.GetError().GetCode(), r.GetError().GetMessage())
		}
		if err != nil {
			cl.Close()
			return fmt.Errorf("chat: register %s: %w", c.user, err)
		}
		c.printf("registered %s (%s)", r.GetRegister().GetUsername(), r.GetRegister().GetUserId())
	}
	// Pushes may follow the login response at once: the client keeps them
	// until the receiver reads them.
	if err := c.authenticate(ctx, cl); err != nil {
		cl.Close()
		return fmt.Errorf("chat: %w", err)
	}
	c.setConn(cl)
	fatal := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.session(ctx, cl, fatal) }()
	defer func() {
		cancel()
		c.connMu.Lock()
		cur := c.cl
		c.connMu.Unlock()
		if cur != nil {
			cur.Close()
		}
		wg.Wait()
	}()

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return fmt.Errorf("chat: %w", err)
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if quit := c.handle(ctx, line); quit {
				return nil
			}
		}
	}
}

// session runs the connections of the session one after the other: it
// receives on cl until the connection ends, then reconnects, until ctx
// ends or reconnecting cannot succeed (reported on fatal).
func (c *chat) session(ctx context.Context, cl *gatewaytest.Client, fatal chan<- error) {
	for {
		hctx, hcancel := context.WithCancel(ctx)
		c.connMu.Lock()
		every := c.heartbeat
		c.connMu.Unlock()
		go c.ping(hctx, cl, every)
		c.receive(ctx, cl)
		hcancel()
		c.setConn(nil)
		cl.Conn().CloseNow()
		if ctx.Err() != nil {
			return
		}
		if code, _ := cl.CloseStatus(); code == statusReplaced {
			// Another connection of this device took over; reconnecting
			// would take it back and start a tug of war.
			fatal <- fmt.Errorf("replaced: device %s connected again elsewhere (%s)", c.device, closeReason(cl))
			return
		} else if code == statusLoggedOut {
			// The device's tokens are revoked: log in again on purpose.
			fatal <- fmt.Errorf("logged out: device %s (%s)", c.device, closeReason(cl))
			return
		}
		c.printf("* connection lost (%s); reconnecting", closeReason(cl))
		var err error
		if cl, err = c.reconnect(ctx); err != nil {
			if ctx.Err() == nil {
				fatal <- err
			}
			return
		}
		c.setConn(cl)
		c.printf("* reconnected; resuming where this device left off")
	}
}

// statusReplaced is the close status of a connection whose device
// connected again (docs/protocol.md).
const statusReplaced = 4001

// closeReason describes how a connection ended.
func closeReason(cl *gatewaytest.Client) string {
	if code, reason := cl.CloseStatus(); code != -1 {
		if reason != "" {
			return fmt.Sprintf("%d %s", code, reason)
		}
		return fmt.Sprintf("%d", code)
	}
	if err := cl.Err(); err != nil {
		// The innermost cause is enough ("EOF", "connection reset by peer").
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return msg
	}
	return "closed"
}

// reconnect dials and resumes with backoff until it succeeds, ctx ends or
// an error reconnecting cannot cure comes up.
func (c *chat) reconnect(ctx context.Context) (*gatewaytest.Client, error) {
	c.connMu.Lock()
	delay := c.goaway
	c.goaway = 0
	c.connMu.Unlock()
	if delay <= 0 {
		delay = firstBackoff
	}
	lastNote := time.Now()
	for attempt := 1; ; attempt++ {
		wait := delay + time.Duration(mrand.Int64N(int64(delay)/2+1))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay = min(2*delay, maxBackoff)
		cl, err := c.dial(ctx)
		if err == nil {
			if err = c.authenticate(ctx, cl); err == nil {
				return cl, nil
			}
			cl.Conn().CloseNow()
			var p permanent
			if errors.As(err, &p) {
				return nil, p.error
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Since(lastNote) > 30*time.Second {
			lastNote = time.Now()
			c.printf("* still reconnecting (attempt %d: %v)", attempt, err)
		}
	}
}

// ping keeps cl alive while it is idle.
func (c *chat) ping(ctx context.Context, cl *gatewaytest.Client, every time.Duration) {
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, callTimeout)
			cl.Call(pctx, &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}})
			cancel()
		}
	}
}

// handle runs one input line and reports whether the session ends.
func (c *chat) handle(ctx context.Context, line string) (quit bool) {
	if c.askingPassword {
		c.askingPassword = false
		c.changePassword(ctx, line)
		return false
	}
	line = strings.TrimSpace(line)
	if line == "" {
		c.printf("error: empty message (type /help for the commands)")
		return false
	}
	if !strings.HasPrefix(line, "/") {
		c.send(ctx, line)
		return false
	}
	fields := strings.Fields(line)
	cmd, args := fields[0], fields[1:]
	var err error
	switch cmd {
	case "/quit", "/exit":
		return true
	case "/help":
		c.printf("%s", chatHelp)
	case "/to":
		err = c.cmdTo(ctx, args)
	case "/group":
		err = c.cmdGroup(ctx, args)
	case "/join":
		err = c.cmdJoin(ctx, args)
	case "/history":
		err = c.cmdHistory(ctx, args)
	case "/friends":
		err = c.cmdFriends(ctx)
	case "/devices":
		err = c.cmdDevices(ctx)
	case "/logout-device":
		err = c.cmdLogoutDevice(ctx, args)
	case "/logout-others":
		err = c.cmdLogoutOthers(ctx)
	case "/password":
		err = c.cmdPassword(args)
	case "/add", "/accept":
		if len(args) != 1 {
			err = fmt.Errorf("usage: %s USER", cmd)
			break
		}
		var id string
		if id, err = c.lookup(ctx, args[0]); err != nil {
			break
		}
		if cmd == "/add" {
			_, err = c.call(ctx, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: id}})
		} else {
			_, err = c.call(ctx, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: id}})
		}
		if err == nil {
			c.printf("ok")
		}
	default:
		err = fmt.Errorf("unknown command %s (type /help for the commands)", cmd)
	}
	if err != nil {
		c.printf("error: %v", err)
	}
	return false
}

// lookup returns the user id of username.
func (c *chat) lookup(ctx context.Context, username string) (string, error) {
	r, err := c.call(ctx, &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: username}})
	if err != nil {
		return "", fmt.Errorf("user %s: %w", username, err)
	}
	p := r.GetFindUser()
	c.mu.Lock()
	c.names[p.GetUserId()] = p.GetUsername()
	c.mu.Unlock()
	return p.GetUserId(), nil
}

// name returns a user's username, asking the server once.
func (c *chat) name(ctx context.Context, id string) string {
	c.mu.Lock()
	n, ok := c.names[id]
	c.mu.Unlock()
	if ok {
		return n
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{UserId: id}})
	if err != nil {
		return id
	}
	n = r.GetGetProfile().GetUsername()
	c.mu.Lock()
	c.names[id] = n
	c.mu.Unlock()
	return n
}

func (c *chat) setOpen(o *openConv) {
	c.mu.Lock()
	c.open = o
	c.mu.Unlock()
	c.printf("now talking in %s", o.title)
}

func (c *chat) cmdTo(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: /to USER")
	}
	id, err := c.lookup(ctx, args[0])
	if err != nil {
		return err
	}
	c.mu.Lock()
	me := c.me
	c.mu.Unlock()
	if id == me {
		return errors.New("cannot open a conversation with yourself")
	}
	conv := domain.DirectConversation(domain.UserID(me), domain.UserID(id))
	c.setOpen(&openConv{title: args[0], conversationID: string(conv)})
	return nil
}

func (c *chat) cmdGroup(ctx context.Context, args []string) error {
	if len(args) < 1 {
		return errors.New("usage: /group NAME USER...")
	}
	var ids []string
	for _, u := range args[1:] {
		id, err := c.lookup(ctx, u)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: args[0], MemberIds: ids}})
	if err != nil {
		return err
	}
	g := r.GetCreateGroup()
	c.printf("created group %s (%s)", args[0], g.GetGroupId())
	c.setOpen(&openConv{title: "#" + args[0], conversationID: g.GetConversationId()})
	return nil
}

func (c *chat) cmdJoin(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: /join GROUPID")
	}
	if _, err := c.call(ctx, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: args[0]}}); err != nil {
		return err
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: args[0]}})
	if err != nil {
		return err
	}
	g := r.GetGroupMembers().GetGroup()
	c.setOpen(&openConv{title: "#" + g.GetName(), conversationID: g.GetConversationId()})
	return nil
}

func (c *chat) current() (*openConv, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		return nil, errors.New("no open conversation: use /to USER, /group NAME USER... or /join GROUPID first")
	}
	return c.open, nil
}

func (c *chat) send(ctx context.Context, text string) {
	o, err := c.current()
	if err != nil {
		c.printf("error: %v", err)
		return
	}
	// One client message id for every attempt: a send retried after the
	// connection dropped is answered with the first attempt's result if
	// that one got through, and never sent twice.
	req := &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{
		To:          &mpimv1.SendRequest_ConversationId{ConversationId: o.conversationID},
		ClientMsgId: randomHex(8), Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: text}}
	pctx, cancel := context.WithTimeout(ctx, sendPatience)
	defer cancel()
	for {
		cl, err := c.conn(pctx)
		if err != nil {
			c.printf("error: message not sent: %v", err)
			return
		}
		cctx, ccancel := context.WithTimeout(pctx, callTimeout)
		r, err := cl.Call(cctx, req)
		ccancel()
		if err != nil {
			if pctx.Err() != nil {
				c.printf("error: message not sent: %v", err)
				return
			}
			// No answer: the connection ended (or the answer is late).
			// Again on the next connection, with the same id.
			select {
			case <-cl.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if e := r.GetError(); e != nil {
			switch e.GetCode() {
			case "unavailable", "conflict", "rate_limited":
				select {
				case <-time.After(max(time.Duration(e.GetRetryAfterMs())*time.Millisecond, 200*time.Millisecond)):
					continue
				case <-pctx.Done():
				}
			}
			c.printf("error: %s: %s", e.GetCode(), e.GetMessage())
			return
		}
		return
	}
}

func (c *chat) cmdHistory(ctx context.Context, args []string) error {
	n := 20
	if len(args) > 1 {
		return errors.New("usage: /history [N]")
	}
	if len(args) == 1 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 || v > 200 {
			return fmt.Errorf("/history: N must be 1..200, got %q", args[0])
		}
		n = v
	}
	o, err := c.current()
	if err != nil {
		return err
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: o.conversationID, Limit: uint32(n)}})
	if err != nil {
		return err
	}
	msgs := r.GetHistory().GetMessages()
	c.printf("-- %d message(s) of %s --", len(msgs), o.title)
	for _, m := range msgs {
		text := m.GetText()
		switch {
		case m.GetDeleted():
			text = "(deleted)"
		case m.GetRecalledAtMs() != 0:
			text = "(recalled)"
		}
		c.printf("[%s] %s: %s", clock(m.GetSentAtMs()), c.name(ctx, m.GetSenderId()), text)
	}
	return nil
}

func (c *chat) cmdFriends(ctx context.Context) error {
	r, err := c.call(ctx, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
	if err != nil {
		return err
	}
	friends := r.GetListFriends().GetFriends()
	c.printf("-- %d friend(s) --", len(friends))
	for _, f := range friends {
		c.printf("  %s (%s)", f.GetUsername(), f.GetDisplayName())
	}
	r, err = c.call(ctx, &mpimv1.ClientFrame_ListFriendRequests{ListFriendRequests: &mpimv1.ListFriendRequestsRequest{}})
	if err != nil {
		return err
	}
	for _, p := range r.GetListFriendRequests().GetIncoming() {
		c.printf("  request from %s: %s (/accept %s)", p.GetUser().GetUsername(), p.GetMessage(), p.GetUser().GetUsername())
	}
	for _, p := range r.GetListFriendRequests().GetOutgoing() {
		c.printf("  request to %s pending", c.name(ctx, p.GetToUserId()))
	}
	return nil
}

func clock(ms int64) string { return time.UnixMilli(ms).Format("15:04:05") }

// receive prints the pushes and signals of cl and acknowledges the
// pushes, until the connection ends.
func (c *chat) receive(ctx context.Context, cl *gatewaytest.Client) {
	for {
		f, err := cl.Next(ctx)
		if err != nil {
			return
		}
		switch {
		case f.GetPush() != nil:
			p := f.GetPush()
			ev := p.GetEvent()
			if ev == nil {
				ev = &mpimv1.Event{}
				if err := proto.Unmarshal(p.GetEnvelope(), ev); err != nil {
					c.printf("error: undecodable push %s: %v", p.GetInboxId(), err)
					ev = nil
				}
			}
			if ev != nil {
				c.mu.Lock()
				dup := c.seen[string(ev.GetId())]
				c.seen[string(ev.GetId())] = true
				c.mu.Unlock()
				if !dup {
					c.show(ctx, p.GetType(), ev)
				}
			}
			// Acknowledge once shown, asynchronously (the response arrives
			// on this connection's reader, which must not wait for us). An
			// ack lost with the connection is harmless: the push comes
			// again and is recognised.
			go func(id string) {
				actx, cancel := context.WithTimeout(ctx, callTimeout)
				defer cancel()
				cl.Call(actx, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: id}})
			}(p.GetInboxId())
		case f.GetSignal() != nil:
			s := f.GetSignal()
			if s.GetKind() == "typing" {
				c.printf("* %s is typing", c.name(ctx, s.GetFromUserId()))
			}
		case f.GetSyncRequired() != nil:
			if f.GetSyncRequired().GetCursor() == "" {
				c.printf("* a new device: /history shows earlier messages")
			} else {
				c.printf("* older pushes were dropped; /history shows what you missed")
			}
		case f.GetGoaway() != nil:
			g := f.GetGoaway()
			c.printf("* server going away: %s", g.GetReason())
			// Leave after the last acks, and come back when asked.
			c.connMu.Lock()
			c.goaway = time.Duration(g.GetReconnectAfterMs()) * time.Millisecond
			c.connMu.Unlock()
			time.AfterFunc(200*time.Millisecond, func() { cl.Close() })
		}
	}
}

// show prints one pushed event.
func (c *chat) show(ctx context.Context, typ string, ev *mpimv1.Event) {
	at := clock(ev.GetOccurredAtMs())
	switch {
	case ev.GetMessageSent() != nil:
		m := ev.GetMessageSent()
		text := m.GetText()
		if m.GetKind() != mpimv1.MessageKind_MESSAGE_KIND_TEXT {
			text = fmt.Sprintf("(%s %s)", strings.TrimPrefix(m.GetKind().String(), "MESSAGE_KIND_"), m.GetAttachment().GetUrl())
		}
		where := ""
		c.mu.Lock()
		if c.open == nil || c.open.conversationID != m.GetConversationId() {
			where = " [" + m.GetConversationId() + "]"
		}
		c.mu.Unlock()
		c.printf("[%s] %s: %s%s", at, c.name(ctx, m.GetSenderId()), text, where)
	case ev.GetMessageRecalled() != nil:
		c.printf("[%s] * %s recalled message %d", at, c.name(ctx, ev.GetMessageRecalled().GetByUserId()), ev.GetMessageRecalled().GetSeq())
	case ev.GetMessageEdited() != nil:
		e := ev.GetMessageEdited()
		c.printf("[%s] * %s edited message %d: %s", at, c.name(ctx, e.GetByUserId()), e.GetSeq(), e.GetText())
	case ev.GetFriendRequested() != nil:
		e := ev.GetFriendRequested()
		c.printf("[%s] * friend request from %s to %s: %s", at, c.name(ctx, e.GetFromUserId()), c.name(ctx, e.GetToUserId()), e.GetMessage())
	case ev.GetFriendRequestAccepted() != nil:
		e := ev.GetFriendRequestAccepted()
		c.printf("[%s] * %s and %s are now friends", at, c.name(ctx, e.GetFromUserId()), c.name(ctx, e.GetByUserId()))
	case ev.GetGroupCreated() != nil:
		e := ev.GetGroupCreated()
		c.printf("[%s] * %s created group %s (%s); /join or talk with its id", at, c.name(ctx, e.GetOwnerId()), e.GetName(), e.GetGroupId())
	case ev.GetMemberJoined() != nil:
		c.printf("[%s] * %s joined %s", at, c.name(ctx, ev.GetMemberJoined().GetUserId()), ev.GetAggregate())
	case ev.GetMemberAdded() != nil:
		c.printf("[%s] * %s was added to %s", at, c.name(ctx, ev.GetMemberAdded().GetUserId()), ev.GetAggregate())
	case ev.GetConversationRead() != nil:
		// Read markers are not worth a line in a terminal.
	default:
		c.printf("[%s] * %s", at, typ)
	}
}
