package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Push settings through real processes: a device registers its push token
// (bad platforms and tokens are invalid), the device list shows it, a
// logout elsewhere removes it; a conversation muted until a time and
// forever is listed so, a mute until year 10000 or with neither or both
// ends is invalid, and an unmute lifts it.
func TestE2EPushSettings(t *testing.T) { testPushSettings(t, startE2ECluster(t)) }

// The same against `mpimd all` on its embedded stand-ins.
func TestEmbeddedPushSettings(t *testing.T) { testPushSettings(t, startEmbeddedCluster(t)) }

func testPushSettings(t *testing.T, cl *e2eCluster) {
	gwA, gwB := cl.gateways[0], cl.gateways[1]
	alice, bob := cl.register(t, gwA, "alice"), cl.register(t, gwB, "bob")
	phone := cl.login(t, alice, "phone", gwA, frame.Proto)
	tablet := cl.login(t, alice, "tablet", gwB, frame.JSON)
	b := cl.login(t, bob, "phone", gwB, frame.JSON)

	register := func(platform, token, app string) *mpimv1.ClientFrame_RegisterPushToken {
		return &mpimv1.ClientFrame_RegisterPushToken{RegisterPushToken: &mpimv1.RegisterPushTokenRequest{Platform: platform, Token: token, AppId: app}}
	}
	fails := func(d *e2eDevice, code string, req any) {
		t.Helper()
		if r := d.do(t, req); r.GetError().GetCode() != code {
			t.Fatalf("%s: %v answered %v, want %s", d, req, r, code)
		}
	}
	for _, bad := range []*mpimv1.ClientFrame_RegisterPushToken{
		register("apns", strings.Repeat("a", 4097), ""),
		register("apns", "", ""),
		register("nokia", "abc", ""),
		register("", "abc", ""),
		register("fcm", "has space", ""),
		register("fcm", "abc", strings.Repeat("x", 129)),
	} {
		fails(tablet, "invalid", bad)
	}
	phone.call(t, register("apns", "0a1b2c", "com.example.chat"))
	tablet.call(t, register("fcm", strings.Repeat("t", 4096), ""))
	devices := &mpimv1.ClientFrame_ListDevices{ListDevices: &mpimv1.ListDevicesRequest{}}
	pushOf := func(r *mpimv1.Response) map[string]string {
		out := map[string]string{}
		for _, d := range r.GetListDevices().GetDevices() {
			out[d.GetDeviceId()] = d.GetPush().GetPlatform() + " " + d.GetPush().GetAppId()
		}
		return out
	}
	phone.eventually(t, "both tokens listed", devices, func(r *mpimv1.Response) bool {
		p := pushOf(r)
		return len(p) == 2 && p["phone"] == "apns com.example.chat" && p["tablet"] == "fcm "
	})
	tablet.call(t, &mpimv1.ClientFrame_RemovePushToken{RemovePushToken: &mpimv1.RemovePushTokenRequest{}})
	phone.eventually(t, "the tablet's token removed", devices, func(r *mpimv1.Response) bool {
		p := pushOf(r)
		return len(p) == 2 && p["phone"] == "apns com.example.chat" && p["tablet"] == " "
	})
	tablet.call(t, register("fcm", "again", ""))
	phone.call(t, &mpimv1.ClientFrame_LogoutDevice{LogoutDevice: &mpimv1.LogoutDeviceRequest{DeviceId: "tablet"}})
	phone.eventually(t, "the tablet gone with its token", devices, func(r *mpimv1.Response) bool {
		p := pushOf(r)
		return len(p) == 1 && p["phone"] == "apns com.example.chat"
	})

	// Do-not-disturb of the direct conversation.
	conv := b.call(t, &mpimv1.ClientFrame_Send{Send: toUser(alice, "push1")}).GetSend().GetConversationId()
	mute := func(untilMs int64, forever bool) *mpimv1.ClientFrame_MuteConversation {
		return &mpimv1.ClientFrame_MuteConversation{MuteConversation: &mpimv1.MuteConversationRequest{ConversationId: conv, UntilMs: untilMs, Forever: forever}}
	}
	now := time.Now()
	const year10000 = 253402300800000
	for _, bad := range []*mpimv1.ClientFrame_MuteConversation{
		mute(year10000, false), mute(math.MaxInt64, false), mute(-1, false), mute(0, false),
		mute(now.Add(-time.Minute).UnixMilli(), false), mute(now.Add(400*24*time.Hour).UnixMilli(), false),
		mute(now.Add(time.Hour).UnixMilli(), true),
	} {
		fails(phone, "invalid", bad)
	}
	fails(phone, "invalid", &mpimv1.ClientFrame_MuteConversation{MuteConversation: &mpimv1.MuteConversationRequest{ConversationId: "nope", Forever: true}})
	until := now.Add(time.Hour).UnixMilli()
	phone.call(t, mute(until, false))
	conversations := &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{}}
	muteOf := func(r *mpimv1.Response) (int64, bool) {
		for _, c := range r.GetConversations().GetConversations() {
			if c.GetConversationId() == conv {
				return c.GetMutedUntilMs(), c.GetMutedForever()
			}
		}
		return -1, false
	}
	phone.eventually(t, "the timed mute listed", conversations, func(r *mpimv1.Response) bool {
		ms, forever := muteOf(r)
		return ms == until && !forever
	})
	phone.call(t, mute(0, true))
	phone.eventually(t, "the mute forever listed", conversations, func(r *mpimv1.Response) bool {
		ms, forever := muteOf(r)
		return ms == 0 && forever
	})
	b.eventually(t, "bob's conversation not muted", conversations, func(r *mpimv1.Response) bool {
		ms, forever := muteOf(r)
		return ms == 0 && !forever
	})
	phone.call(t, &mpimv1.ClientFrame_UnmuteConversation{UnmuteConversation: &mpimv1.UnmuteConversationRequest{ConversationId: conv}})
	phone.eventually(t, "the mute lifted", conversations, func(r *mpimv1.Response) bool {
		ms, forever := muteOf(r)
		return ms == 0 && !forever
	})
}
