package client_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/connect"
	inboxkeys "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/sealed"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	inboxproj "github.com/mpim/mpim/projectors/inbox"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/schema"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// startGateway runs a gateway in process on real Redis and MariaDB, with
// the real delivery hub and inbox projector, and returns its WebSocket
// URL. Everything stops when the test ends.
func startGateway(tb testing.TB) string { return startCore(tb).url }

// core is a gateway started by startCore, with what a test needs to look
// into its Redis.
type core struct {
	url  string
	rdb  *redis.Client
	keys inboxkeys.Keys
}

// startCore is startGateway, also returning the Redis client and the inbox
// keys of the gateway.
func startCore(tb testing.TB) core {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); wg.Wait() })
	run := func(what string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				tb.Errorf("%s: %v", what, err)
			}
		})
	}
	must := func(err error) {
		if err != nil {
			tb.Helper()
			tb.Fatal(err)
		}
	}
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	tb.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 2})
	must(err)
	tb.Cleanup(func() { store.Close() })
	cmd, err := command.New(store, command.Config{})
	must(err)
	db, err := connect.MySQL(ctx, testsvc.MySQL(tb))
	must(err)
	tb.Cleanup(func() { db.Close() })
	_, err = schema.Migrate(ctx, db)
	must(err)
	reg := prometheus.NewRegistry()
	hub, err := delivery.New(rdb, delivery.Config{Prefix: rt.Prefix, GatewayID: "gw-client", PollInterval: 50 * time.Millisecond,
		AckTimeout: time.Hour, Registerer: reg})
	must(err)
	run("delivery hub", hub.Run)
	inbox, err := inboxproj.New(rdb, inboxproj.Config{Prefix: rt.Prefix})
	must(err)
	runner, err := projectors.NewRunner(store, &projectors.Static{}, inbox, projectors.RunnerConfig{
		BatchSize: 200, Block: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond})
	must(err)
	run("inbox projector", runner.Run)
	keys, _, err := sealed.Generate()
	must(err)
	srv, err := gateway.New(gateway.Config{GatewayID: "gw-client", PublicAddr: "127.0.0.1:1", Prefix: rt.Prefix,
		Argon2: gateway.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}, PasswordKeys: keys,
		ConnRate: 1000, ConnBurst: 1000, UserRate: 1000, UserBurst: 1000, DrainGrace: 200 * time.Millisecond},
		gateway.Deps{Commands: cmd, DB: db, Redis: rdb, Hub: gateway.DeliveryHub(hub), Registerer: reg})
	must(err)
	hs := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		hs.Close()
	})
	return core{url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", rdb: rdb, keys: inboxkeys.NewKeys(rt.Prefix)}
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// dialUser registers username and logs its device in on a new connection.
func dialUser(tb testing.TB, url string, enc frame.Encoding, username, device string) (*client.Conn, *mpimv1.SessionResult) {
	tb.Helper()
	ctx := testCtx(tb)
	c, err := client.Dial(ctx, url, &client.Options{Encoding: enc})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.CloseNow() })
	if _, err := c.Register(ctx, &mpimv1.RegisterRequest{Username: username, Password: "password-" + username}); err != nil && client.ErrorCode(err) != "exists" {
		tb.Fatal(err)
	}
	s, err := c.Login(ctx, &mpimv1.LoginRequest{Username: username, Password: "password-" + username, DeviceId: device})
	if err != nil {
		tb.Fatal(err)
	}
	return c, s
}

// nextFrame returns the next frame of c that want accepts, failing the
// test on any other.
func nextFrame(tb testing.TB, c *client.Conn, what string, want func(*mpimv1.ServerFrame) bool) *mpimv1.ServerFrame {
	tb.Helper()
	f, err := c.Next(testCtx(tb))
	if err != nil || !want(f) {
		tb.Fatalf("frame %v, %v; want %s", f, err, what)
	}
	return f
}

func isSync(f *mpimv1.ServerFrame) bool { return f.GetSyncRequired() != nil }
func isPush(f *mpimv1.ServerFrame) bool { return f.GetPush() != nil }

func sendTo(to, text string) *mpimv1.ClientFrame_Send {
	return &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: to}, Text: text, ClientMsgId: text}}
}

func TestConnSpeaksBothEncodings(t *testing.T) {
	url := startGateway(t)
	for _, enc := range []frame.Encoding{frame.Proto, frame.JSON} {
		t.Run(enc.String(), func(t *testing.T) {
			tag := map[frame.Encoding]string{frame.Proto: "p", frame.JSON: "j"}[enc]
			amy, _ := dialUser(t, url, enc, "amy"+tag, "phone")
			bob, bs := dialUser(t, url, enc, "bob"+tag, "phone")
			nextFrame(t, amy, "sync_required", isSync)
			nextFrame(t, bob, "sync_required", isSync)

			// A request answered with an error comes back as a
			// *ResponseError from Request, and as a response from Call.
			ctx := testCtx(t)
			bad := &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: "amy" + tag, Password: "wrong", DeviceId: "x"}}
			if _, err := amy.Request(ctx, bad); client.ErrorCode(err) == "" {
				t.Fatalf("login again with a wrong password: %v, want an error response", err)
			}
			if r, err := amy.Call(ctx, bad); err != nil || r.GetError() == nil {
				t.Fatalf("Call: %v, %v; want the error response", r, err)
			}

			// Go hands the answer to a callback; the push reaches bob.
			answered := make(chan *mpimv1.Response, 1)
			text := "hello-" + enc.String()
			if err := amy.Go(ctx, &mpimv1.ClientFrame{Request: sendTo(bs.GetUserId(), text)}, func(r *mpimv1.Response) { answered <- r }); err != nil {
				t.Fatal(err)
			}
			if r := <-answered; client.ResponseErr(r) != nil || r.GetSend().GetSeq() == 0 {
				t.Fatalf("send answered %v", r)
			}
			p := nextFrame(t, bob, "a push", isPush).GetPush()
			ev, err := client.PushEvent(p)
			if err != nil || ev.GetMessageSent().GetText() != text {
				t.Fatalf("push %v: event %v, %v; want the message %q", p, ev, err, text)
			}
			if err := bob.Ack(ctx, p.GetInboxId()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConnSurfacesCloseCodes(t *testing.T) {
	url := startGateway(t)
	old, _ := dialUser(t, url, frame.Proto, "cat", "laptop")
	dialUser(t, url, frame.Proto, "cat", "laptop") // the same device again
	select {
	case <-old.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the older connection of the device stayed open")
	}
	if err := old.Err(); !errors.Is(err, client.ErrReplaced) || errors.Is(err, client.ErrLoggedOut) {
		t.Fatalf("older connection ended with %v, want ErrReplaced", err)
	}
	if code, _ := old.CloseStatus(); code != client.StatusReplaced {
		t.Fatalf("close status %d, want %d", code, client.StatusReplaced)
	}
	if _, err := old.Call(testCtx(t), &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}); err == nil {
		t.Fatal("a call on an ended connection succeeded")
	}
	if _, err := old.Call(testCtx(t), "not a request"); err == nil {
		t.Fatal("Call took a string as a request")
	}
}

func TestSessionReconnectsAndEndsWhenReplaced(t *testing.T) {
	core := startCore(t)
	url := core.url
	dan, _ := dialUser(t, url, frame.Proto, "dan", "phone")
	_, es := dialUser(t, url, frame.Proto, "eve", "seed")

	texts := make(chan string, 16)
	reconnected := make(chan struct{}, 1)
	s, err := client.Open(testCtx(t), client.SessionConfig{URL: url, Username: "eve", Password: "password-eve", DeviceID: "tablet",
		FirstBackoff: 10 * time.Millisecond,
		Handler: func(f *mpimv1.ServerFrame) {
			if p := f.GetPush(); p != nil {
				ev, err := client.PushEvent(p)
				if err != nil {
					t.Error(err)
					return
				}
				texts <- ev.GetMessageSent().GetText()
			}
		},
		OnReconnect: func() { reconnected <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Login().GetUserId() != es.GetUserId() || s.Token() == "" {
		t.Fatalf("session logged in as %v (token %q), want eve", s.Login(), s.Token())
	}
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-texts:
			if got != want {
				t.Fatalf("pushed %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q never pushed", want)
		}
	}
	ctx := testCtx(t)
	if _, err := dan.Request(ctx, sendTo(es.GetUserId(), "one")); err != nil {
		t.Fatal(err)
	}
	expect("one")
	// The device's first ack stores its first cursor. Without a cursor a
	// device starts at its inbox's end and is told to sync (nothing to
	// resume from), so the drop below waits for it.
	cursor := core.keys.Cursor(domain.UserID(es.GetUserId()), "tablet")
	testsvc.Eventually(t, time.Minute, "the tablet's first ack stored", func() bool {
		return core.rdb.Exists(ctx, cursor).Val() == 1
	})

	// The connection drops: the session resumes with its token, and the
	// device receives what was sent meanwhile.
	c, err := s.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	if _, err := dan.Request(ctx, sendTo(es.GetUserId(), "two")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("the session did not reconnect")
	}
	for got := ""; got != "two"; {
		// "one" may come again if its ack was lost with the connection.
		select {
		case got = <-texts:
			if got != "one" && got != "two" {
				t.Fatalf("pushed %q, want two", got)
			}
		case <-time.After(30 * time.Second): // a hang detector
			t.Fatal(`"two" never pushed after the reconnect`)
		}
	}
	if _, err := s.Request(ctx, &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}); err != nil {
		t.Fatalf("ping after the reconnect: %v", err)
	}

	// The same device logs in elsewhere: the session ends for good.
	dialUser(t, url, frame.Proto, "eve", "tablet")
	select {
	case <-s.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the replaced session kept running")
	}
	if err := s.Err(); !errors.Is(err, client.ErrReplaced) {
		t.Fatalf("session ended with %v, want ErrReplaced", err)
	}
}
