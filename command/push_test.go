package command_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
)

func TestPushTokenCommands(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.register(t, "alice")
	if _, err := e.svc.UpdateUser(ctx, alice, domain.LogIn{Device: alice.Device, Platform: "ios"}); err != nil {
		t.Fatal(err)
	}
	good := domain.PushToken{Platform: domain.PushAPNs, Token: strings.Repeat("ab", 32), AppID: "com.example.chat"}

	t.Run("registered and removed on a logged-in device", func(t *testing.T) {
		if _, err := e.svc.RegisterPushToken(ctx, alice, good); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.RemovePushToken(ctx, alice); err != nil {
			t.Fatal(err)
		}
	})
	bad := map[string]domain.PushToken{
		"token too long":   {Platform: domain.PushFCM, Token: strings.Repeat("x", domain.MaxPushTokenBytes+1)},
		"empty token":      {Platform: domain.PushFCM},
		"unknown platform": {Platform: "blackberry", Token: "abc"},
		"no platform":      {Token: "abc"},
		"token with space": {Platform: domain.PushCustom, Token: "a b"},
		"app id too long":  {Platform: domain.PushFCM, Token: "abc", AppID: strings.Repeat("a", domain.MaxPushAppIDBytes+1)},
		"app id not ascii": {Platform: domain.PushFCM, Token: "abc", AppID: "app\u00e9"},
	}
	for name, tok := range bad {
		t.Run(name+" is invalid", func(t *testing.T) {
			_, err := e.svc.RegisterPushToken(ctx, alice, tok)
			wantCode(t, err, domain.EInvalid)
		})
	}
	t.Run("longest token is accepted", func(t *testing.T) {
		if _, err := e.svc.RegisterPushToken(ctx, alice, domain.PushToken{Platform: domain.PushWebPush, Token: strings.Repeat("x", domain.MaxPushTokenBytes)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a device without a session is not found", func(t *testing.T) {
		other := alice
		other.Device = "tablet"
		_, err := e.svc.RegisterPushToken(ctx, other, good)
		wantCode(t, err, domain.ENotFound)
		_, err = e.svc.RemovePushToken(ctx, other)
		wantCode(t, err, domain.ENotFound)
	})
	t.Run("no device is invalid", func(t *testing.T) {
		other := alice
		other.Device = ""
		_, err := e.svc.RegisterPushToken(ctx, other, good)
		wantCode(t, err, domain.EInvalid)
	})
	t.Run("a logged-out device is not found", func(t *testing.T) {
		if _, err := e.svc.UpdateUser(ctx, alice, domain.LogOut{Device: alice.Device}); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.RegisterPushToken(ctx, alice, good)
		wantCode(t, err, domain.ENotFound)
	})
}

func TestMuteConversationCommands(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob, conv := e.directPair(t)
	now := e.clock.Now()

	t.Run("timed, forever and unmute are accepted", func(t *testing.T) {
		if _, err := e.svc.MuteConversation(ctx, alice, conv, now.Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.MuteConversation(ctx, alice, conv, time.Time{}, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.UnmuteConversation(ctx, alice, conv); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.UnmuteConversation(ctx, bob, conv); err != nil { // not muted: still fine
			t.Fatal(err)
		}
		if _, err := e.svc.MuteConversation(ctx, alice, conv, now.Add(365*24*time.Hour), false); err != nil {
			t.Fatal(err)
		}
	})
	year10000 := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	bad := map[string]struct {
		until   time.Time
		forever bool
	}{
		"until year 10000":         {until: year10000},
		"more than a year ahead":   {until: now.Add(366 * 24 * time.Hour)},
		"until a past time":        {until: now.Add(-time.Minute)},
		"until now":                {until: now},
		"neither end nor forever":  {},
		"both an end and forever":  {until: now.Add(time.Hour), forever: true},
		"forever with year 10000 ": {until: year10000, forever: true},
	}
	for name, c := range bad {
		t.Run(name+" is invalid", func(t *testing.T) {
			_, err := e.svc.MuteConversation(ctx, alice, conv, c.until, c.forever)
			wantCode(t, err, domain.EInvalid)
		})
	}
	t.Run("a malformed conversation is invalid", func(t *testing.T) {
		_, err := e.svc.MuteConversation(ctx, alice, "x/nope", now.Add(time.Hour), false)
		wantCode(t, err, domain.EInvalid)
		_, err = e.svc.UnmuteConversation(ctx, alice, "")
		wantCode(t, err, domain.EInvalid)
	})
	t.Run("someone else's direct conversation is forbidden", func(t *testing.T) {
		carol := e.register(t, "carol")
		_, err := e.svc.MuteConversation(ctx, carol, conv, time.Time{}, true)
		wantCode(t, err, domain.EForbidden)
	})
}
