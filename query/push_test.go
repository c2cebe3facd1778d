package query

import (
	"reflect"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors/cache"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/schema"
)

// TestPushSettingsReadBack: push settings written by the commands and
// projected by the real cache and MySQL projectors read back as the push
// notifier and the clients see them: tokens of logged-in devices only,
// mutes in force until their end, both listed with devices and
// conversations.
func TestPushSettingsReadBack(t *testing.T) {
	ctx := testCtx(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	w := commandtest.New(t, commandtest.Options{Partitions: 2, Now: func() time.Time { return now }})
	must := func(_ command.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	alice := commandtest.Register(t, w.Svc, "alice", "Alice")
	bob := commandtest.Register(t, w.Svc, "bob", "Bob")
	login := func(a command.Actor, dev domain.DeviceID) command.Actor {
		a.Device = dev
		must(w.Svc.UpdateUser(ctx, a, domain.LogIn{Device: dev, Platform: "test"}))
		return a
	}
	phone, tablet, watch := login(alice, "phone"), login(alice, "tablet"), login(bob, "watch")
	apns := domain.PushToken{Platform: domain.PushAPNs, Token: "00ff", AppID: "com.example.chat"}
	must(w.Svc.RegisterPushToken(ctx, phone, apns))
	must(w.Svc.RegisterPushToken(ctx, tablet, domain.PushToken{Platform: domain.PushFCM, Token: "tab"}))
	must(w.Svc.RegisterPushToken(ctx, watch, domain.PushToken{Platform: domain.PushCustom, Token: "w"}))
	must(w.Svc.UpdateUser(ctx, phone, domain.LogOutOthers{Keep: "phone"})) // the tablet's token goes
	must(w.Svc.RemovePushToken(ctx, watch))

	direct := domain.DirectConversation(alice.User, bob.User)
	if _, err := w.Svc.Send(ctx, bob, domain.SendMessage{Conversation: direct, Kind: domain.KindText, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	group := domain.ConversationID("c/01J0000000000000000000000G")
	until := now.Add(time.Hour)
	must(w.Svc.MuteConversation(ctx, alice, direct, until, false))
	must(w.Svc.MuteConversation(ctx, alice, group, time.Time{}, true))
	must(w.Svc.MuteConversation(ctx, bob, direct, until, false))
	must(w.Svc.UnmuteConversation(ctx, bob, direct))

	db, err := connect.MySQL(ctx, testsvc.MySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := schema.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	rm, err := mysql.NewReadModel(db, mysql.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rm.Close() })
	cp, err := cache.New(w.RDB, cache.Config{Prefix: w.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	projectorstest.RunToHead(t, w.Store, rm, rm, 100)
	projectorstest.RunToHead(t, w.Store, cp, cp, 100)
	clock := now
	s, err := New(db, w.RDB, Config{Prefix: w.Prefix, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("push targets are the logged-in devices with a token", func(t *testing.T) {
		got, err := s.PushTargets(ctx, []domain.UserID{alice.User, bob.User, alice.User})
		if err != nil {
			t.Fatal(err)
		}
		mine := []domain.DeviceToken{{Device: "phone", PushToken: apns}}
		if want := [][]domain.DeviceToken{mine, nil, mine}; !reflect.DeepEqual(got, want) {
			t.Errorf("targets of alice, bob, alice %+v, want %+v", got, want)
		}
		if got, err := s.PushTargets(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("targets of nobody %+v, %v", got, err)
		}
	})
	t.Run("muted until the end, forever, or not at all", func(t *testing.T) {
		cases := []struct {
			user domain.UserID
			conv domain.ConversationID
			at   time.Time
			want bool
		}{
			{alice.User, direct, now, true},
			{alice.User, direct, until.Add(-time.Millisecond), true},
			{alice.User, direct, until, false},
			{alice.User, group, now.Add(100 * 365 * 24 * time.Hour), true},
			{bob.User, direct, now, false},
			{bob.User, group, now, false},
		}
		for _, c := range cases {
			if got, err := s.Muted(ctx, []domain.UserID{c.user}, []domain.ConversationID{c.conv}, c.at); err != nil || len(got) != 1 || got[0] != c.want {
				t.Errorf("Muted(%s, %s, %v) = %v, %v; want %v", c.user, c.conv, c.at, got, err, c.want)
			}
		}
		var users []domain.UserID
		var convs []domain.ConversationID
		var want []bool
		for _, c := range cases {
			if c.at.Equal(now) {
				users, convs, want = append(users, c.user), append(convs, c.conv), append(want, c.want)
			}
		}
		if got, err := s.Muted(ctx, users, convs, now); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Muted of %v in %v at once = %v, %v; want %v", users, convs, got, err, want)
		}
	})
	t.Run("bad ids are invalid", func(t *testing.T) {
		if _, err := s.PushTargets(ctx, []domain.UserID{alice.User, "nobody"}); domain.ErrorCode(err) != domain.EInvalid {
			t.Errorf("PushTargets of a bad id: %v", err)
		}
		if _, err := s.Muted(ctx, []domain.UserID{alice.User}, []domain.ConversationID{"x/y"}, now); domain.ErrorCode(err) != domain.EInvalid {
			t.Errorf("Muted of a bad conversation: %v", err)
		}
		if _, err := s.Muted(ctx, []domain.UserID{alice.User, bob.User}, []domain.ConversationID{direct}, now); domain.ErrorCode(err) != domain.EInvalid {
			t.Errorf("Muted of two users in one conversation: %v", err)
		}
	})
	t.Run("devices list the push platform and app id", func(t *testing.T) {
		devs, err := s.Devices(ctx, alice.User, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) != 1 || devs[0].GetDeviceId() != "phone" || devs[0].GetPush().GetPlatform() != "apns" || devs[0].GetPush().GetAppId() != "com.example.chat" {
			t.Errorf("alice's devices %v", devs)
		}
	})
	t.Run("conversations list the mute while it lasts", func(t *testing.T) {
		list := func() (untilMs int64, forever bool) {
			t.Helper()
			l, err := s.Conversations(ctx, alice.User, domain.ConversationsPage{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.GetConversations()) != 1 {
				t.Fatalf("alice's conversations %v", l)
			}
			c := l.GetConversations()[0]
			return c.GetMutedUntilMs(), c.GetMutedForever()
		}
		if ms, forever := list(); ms != until.UnixMilli() || forever {
			t.Errorf("listed mute %d %v, want until %d", ms, forever, until.UnixMilli())
		}
		clock = until
		if ms, forever := list(); ms != 0 || forever {
			t.Errorf("listed mute %d %v after its end, want none", ms, forever)
		}
	})
}
