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
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
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
		out: stdout, names: map[string]string{}, seen: map[string]bool{}, ready: make(chan struct{})}
	return c.run(ctx, *register, stdin)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// chat is one terminal session on a client.Session: when the connection
// drops (a gateway restart, a network failure) the session reconnects with
// backoff and resumes the device's session with its token. The server
// delivers from the device's cursor (the last acknowledged push), so nothing
// sent meanwhile is missed, and pushes shown before are recognised by their
// event id and not shown again.
type chat struct {
	url      string
	enc      frame.Encoding
	user     string
	password string // the one logged in with; only the input loop touches it
	device   string

	outMu sync.Mutex
	out   io.Writer

	s     *client.Session
	ctx   context.Context // the chat's, for requests made while showing pushes
	ready chan struct{}   // closed once s and ctx are set and the login shown

	mu    sync.Mutex
	me    string            // own user id
	names map[string]string // user id -> username
	seen  map[string]bool   // event ids shown (pushes may be re-sent)
	open  *openConv

	// askingPassword: the next input line is the new password (/password);
	// only the input loop touches it.
	askingPassword bool
}

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

// call sends a request and turns an error result into an error.
func (c *chat) call(ctx context.Context, req any) (*mpimv1.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return c.s.Request(ctx, req)
}

// register registers the user over a connection of its own.
func (c *chat) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl, err := client.Dial(ctx, c.url, &client.Options{Encoding: c.enc})
	if err != nil {
		return err
	}
	defer cl.Close()
	r, err := cl.Register(ctx, &mpimv1.RegisterRequest{Username: c.user, Password: c.password, DisplayName: c.user})
	if err != nil {
		return err
	}
	c.printf("registered %s (%s)", r.GetUsername(), r.GetUserId())
	return nil
}

func (c *chat) run(ctx context.Context, register bool, in io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if register {
		if err := c.register(ctx); err != nil {
			return fmt.Errorf("chat: register %s: %w", c.user, err)
		}
	}
	lastNote := time.Now()
	s, err := client.Open(ctx, client.SessionConfig{
		URL: c.url, Options: client.Options{Encoding: c.enc},
		Username: c.user, Password: c.password, DeviceID: c.device, Platform: "mpimctl",
		Handler: c.handleFrame,
		OnDisconnect: func(err error) {
			c.printf("* connection lost (%s); reconnecting", closeReason(err))
		},
		OnReconnect: func() { c.printf("* reconnected; resuming where this device left off") },
		OnRetry: func(attempt int, err error) {
			if time.Since(lastNote) > 30*time.Second {
				lastNote = time.Now()
				c.printf("* still reconnecting (attempt %d: %v)", attempt, err)
			}
		},
		Timeout: callTimeout,
	})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer s.Close()
	l := s.Login()
	c.s, c.ctx = s, ctx
	c.mu.Lock()
	c.me = l.GetUserId()
	c.names[c.me] = l.GetProfile().GetUsername()
	c.mu.Unlock()
	c.printf("logged in as %s (%s) on %s; /help lists the commands", l.GetProfile().GetUsername(), c.me, c.device)
	close(c.ready)

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
		case <-s.Done():
			return fmt.Errorf("chat: %w", c.ended(s.Err()))
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

// ended describes why the session ended on its own.
func (c *chat) ended(err error) error {
	switch {
	case errors.Is(err, client.ErrReplaced):
		// Another connection of this device took over; reconnecting
		// would take it back and start a tug of war.
		return fmt.Errorf("replaced: device %s connected again elsewhere (%s)", c.device, closeReason(err))
	case errors.Is(err, client.ErrLoggedOut):
		// The device's tokens are revoked: log in again on purpose.
		return fmt.Errorf("logged out: device %s (%s)", c.device, closeReason(err))
	}
	return err
}

// closeReason describes how a connection ended.
func closeReason(err error) string {
	var ce *client.CloseError
	if errors.As(err, &ce) {
		if ce.Reason != "" {
			return fmt.Sprintf("%d %s", int(ce.Code), ce.Reason)
		}
		return fmt.Sprintf("%d", int(ce.Code))
	}
	if err != nil {
		// The innermost cause is enough ("EOF", "connection reset by peer").
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return msg
	}
	return "closed"
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
