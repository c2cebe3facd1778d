package mysql

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// TestPushSettingsProjectAndRebuild: push tokens follow their device (set,
// replaced, kept by a login of the logged-in device, cleared by removal, by
// logout and by logout elsewhere), mutes follow the user's last mute or
// unmute of each conversation, and a rebuild one event per batch yields the
// same tables.
func TestPushSettingsProjectAndRebuild(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 4)
	sc := newScenario(ctx, t, env.svc, 3, 0)
	alice, bob, carol := sc.users[0], sc.users[1], sc.users[2]
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	on := func(a command.Actor, dev domain.DeviceID) command.Actor {
		a.Device = dev
		must(env.svc.UpdateUser(ctx, a, domain.LogIn{Device: dev, Platform: "test"}))
		return a
	}
	token := func(p domain.PushPlatform, tok, app string) domain.PushToken {
		return domain.PushToken{Platform: p, Token: tok, AppID: app}
	}
	phone, tablet, laptop, watch, band := on(alice, "phone"), on(alice, "tablet"), on(alice, "laptop"), on(bob, "watch"), on(bob, "band")
	must(env.svc.RegisterPushToken(ctx, phone, token(domain.PushAPNs, "aaaa", "com.example")))
	must(env.svc.RegisterPushToken(ctx, tablet, token(domain.PushFCM, "t1", "")))
	must(env.svc.RegisterPushToken(ctx, tablet, token(domain.PushFCM, "t2", "proj"))) // replaces t1
	on(alice, "tablet")                                                               // logged in again: keeps t2
	must(env.svc.RegisterPushToken(ctx, laptop, token(domain.PushWebPush, `{"endpoint":"https://push.example/x"}`, "")))
	must(env.svc.RemovePushToken(ctx, laptop))
	must(env.svc.RegisterPushToken(ctx, watch, token(domain.PushCustom, "w", "")))
	must(env.svc.RegisterPushToken(ctx, band, token(domain.PushFCM, "b", "")))
	must(env.svc.UpdateUser(ctx, band, domain.LogOut{Device: "band"}))    // logged out: no token
	must(env.svc.UpdateUser(ctx, tablet, domain.LogOut{Device: "phone"})) // logged out elsewhere
	on(alice, "phone")                                                    // back, without a token

	direct := domain.DirectConversation(alice.User, bob.User)
	group := domain.ConversationID("c/01J0000000000000000000000G")
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	must(env.svc.MuteConversation(ctx, alice, direct, until, false))
	must(env.svc.MuteConversation(ctx, alice, direct, time.Time{}, true)) // replaces the timed mute
	must(env.svc.MuteConversation(ctx, alice, group, until, false))
	must(env.svc.MuteConversation(ctx, bob, direct, until, false))
	must(env.svc.UnmuteConversation(ctx, bob, direct))
	must(env.svc.UnmuteConversation(ctx, carol, group)) // never muted

	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	w := &watched{Projector: rm}
	project(t, env.store, w, rm.Checkpoints)
	w.check(t)
	if n := count(t, db, tQuarantine, ""); n != 0 {
		t.Fatalf("%d events quarantined", n)
	}
	wantTokens := []string{
		string(alice.User) + " laptop   ",
		string(alice.User) + " phone   ",
		string(alice.User) + " tablet fcm t2 proj",
		string(bob.User) + " band   ",
		string(bob.User) + " watch custom w ",
	}
	if got := readTokens(t, db, readmodel.Devices); !slices.Equal(got, wantTokens) {
		t.Errorf("tokens %q, want %q", got, wantTokens)
	}
	wantMutes := []string{
		string(alice.User) + " " + string(group) + " " + until.Format(time.RFC3339Nano),
		string(alice.User) + " " + string(direct) + " forever",
	}
	if got := readMutes(t, db, readmodel.Mutes); !slices.Equal(got, wantMutes) {
		t.Errorf("mutes %q, want %q", got, wantMutes)
	}

	clean := openTestDB(t)
	if err := Rebuild(ctx, clean, env.store, RebuildOptions{BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	sameModel(t, db, clean)
}

// readTokens returns every device's "user device platform token app" line,
// sorted, from the devices table.
func readTokens(tb testing.TB, db *sql.DB, table string) []string {
	tb.Helper()
	var out []string
	queryRows(tb, db, func(rows *sql.Rows) error {
		var u, d, p, tok, app string
		if err := rows.Scan(&u, &d, &p, &tok, &app); err != nil {
			return err
		}
		out = append(out, u+" "+d+" "+p+" "+tok+" "+app)
		return nil
	}, "SELECT user_id, device_id, push_platform, push_token, push_app_id FROM "+table)
	slices.Sort(out)
	return out
}

// readMutes returns every "user conversation end" line (end RFC 3339 or
// "forever"), sorted.
func readMutes(tb testing.TB, db *sql.DB, table string) []string {
	tb.Helper()
	var out []string
	queryRows(tb, db, func(rows *sql.Rows) error {
		var u, c string
		var until sql.NullTime
		if err := rows.Scan(&u, &c, &until); err != nil {
			return err
		}
		end := "forever"
		if until.Valid {
			end = until.Time.UTC().Format(time.RFC3339Nano)
		}
		out = append(out, u+" "+c+" "+end)
		return nil
	}, "SELECT user_id, conversation_id, muted_until FROM "+table)
	slices.Sort(out)
	return out
}

func queryRows(tb testing.TB, db *sql.DB, scan func(*sql.Rows) error, q string) {
	tb.Helper()
	rows, err := db.Query(q)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			tb.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
}
