package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
)

// End reaches a device's attachment on another gateway through that
// gateway's signal channel and the one on this gateway directly; the
// devices not named stay attached, and the ended devices' routes are gone
// (DevicePresence no longer lists them as online).
func TestEndReachesDevicesOnEveryGateway(t *testing.T) {
	e := newEnv(t)
	ha, hb := e.hub(t, "gw-a", nil, nil), e.hub(t, "gw-b", nil, nil)
	e.waitSubscribed(t, "gw-a") // signals published before it subscribed are lost
	e.waitSubscribed(t, "gw-b")
	u := newUser()
	here, there, kept := newSink(), newSink(), newSink()
	ha.attach(t, u, "here", here)
	hb.attach(t, u, "there", there)
	hb.attach(t, u, "kept", kept)
	ctx := context.Background()
	ps, err := ha.DevicePresence(ctx, u)
	if err != nil || len(ps) != 3 || !ps["there"].Online || !ps["kept"].Online {
		t.Fatalf("presence before: %v, %v; want three online devices", ps, err)
	}
	if err := ha.End(ctx, u, []domain.DeviceID{"here", "there", "never-attached"}, "logged out"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for here.ended.Load() == 0 || there.ended.Load() == 0 || ha.Devices() != 0 || hb.Devices() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("ended here %d, there %d; attached gw-a %d, gw-b %d; want 1, 1, 0, 1",
				here.ended.Load(), there.ended.Load(), ha.Devices(), hb.Devices())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := kept.ended.Load(); n != 0 {
		t.Fatalf("a device that was not named was ended %d times", n)
	}
	for {
		ps, err = ha.DevicePresence(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if !ps["there"].Online && !ps["here"].Online && ps["kept"].Online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence after: %v; want only kept online", ps)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, bad := range []struct {
		user   domain.UserID
		device domain.DeviceID
		reason string
	}{
		{"nobody", "d", "x"}, {u, "two words", "x"}, {u, "", "x"}, {u, "d", ""}, {u, "d", "a\nb"},
	} {
		if err := ha.End(ctx, bad.user, []domain.DeviceID{bad.device}, bad.reason); domain.ErrorCode(err) != domain.EInvalid {
			t.Errorf("End(%q, %q, %q) = %v, want invalid", bad.user, bad.device, bad.reason, err)
		}
	}
}
