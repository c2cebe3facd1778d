package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// phcMarker starts every argon2id hash in the clear; sealedMarker every
// sealed one.
const phcMarker, sealedMarker = "$argon2id$", "sealed:v1:"

// changeBobsPassword changes bob's password over his device b and checks
// over fresh connections to gw that the new password logs in and the old
// one no longer does.
func changeBobsPassword(t *testing.T, cl *e2eCluster, b *e2eDevice, bob *e2eUser, gw *mpimdProc) {
	t.Helper()
	newPassword := "new-" + bob.password()
	b.call(t, &mpimv1.ClientFrame_ChangePassword{ChangePassword: &mpimv1.ChangePasswordRequest{OldPassword: bob.password(), NewPassword: newPassword}})
	if e := loginOnce(t, cl, gw, bob.name, newPassword); e != nil {
		t.Fatalf("login with bob's new password: %v", e)
	}
	if e := loginOnce(t, cl, gw, bob.name, bob.password()); e.GetCode() != "bad_credentials" {
		t.Fatalf("login with bob's old password: %v, want bad_credentials", e)
	}
}

// loginOnce logs name in over a fresh connection to gw and returns the
// error answered (nil: logged in).
func loginOnce(t *testing.T, cl *e2eCluster, gw *mpimdProc, name, password string) *mpimv1.Error {
	t.Helper()
	ctx, c, done := cl.dialOnce(t, gw)
	defer done()
	r, err := c.Call(ctx, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: name, Password: password, DeviceId: "laptop"}})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return r.GetError()
}

// auditSecrets checks that no password hash in the clear is anywhere in
// the deployment's Redis (the log, snapshots, caches: every key under its
// prefix) or MySQL (the archive, the users table), and that the archive and
// the users table hold the users' sealed hashes.
func auditSecrets(t *testing.T, cl *e2eCluster, users int) {
	t.Helper()
	redisAddr, prefix, dsn := flagValue(cl.args, "--redis-addr"), flagValue(cl.args, "--prefix"), flagValue(cl.args, "--mysql")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	count := func(q string, args ...any) int {
		var n int
		if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Registrations and bob's change: users+1 hashes, once archived.
	// Occurrences of a marker in the archive's segments and rows.
	const occurrences = "SELECT COALESCE(SUM((LENGTH(%[1]s) - LENGTH(REPLACE(%[1]s, ?, ''))) DIV LENGTH(?)), 0) FROM %[2]s"
	hashes := func(marker string) int {
		return count(fmt.Sprintf(occurrences, "body", "event_archive_segments"), marker, marker) +
			count(fmt.Sprintf(occurrences, "payload", "event_archive"), marker, marker)
	}
	waitUntil(t, "the password hashes archived", func() bool { return hashes(sealedMarker)+hashes(phcMarker) >= users+1 })
	if n := hashes(phcMarker); n != 0 {
		t.Errorf("%d archived events hold a password hash in the clear", n)
	}
	if n := hashes(sealedMarker); n < users+1 {
		t.Errorf("%d archived events hold a sealed password hash, want %d", n, users+1)
	}
	waitUntil(t, "the users in the users table", func() bool { return count("SELECT COUNT(*) FROM users") == users })
	if n := count("SELECT COUNT(*) FROM users WHERE password_hash NOT LIKE 'sealed:v1:%'"); n != 0 {
		t.Errorf("%d users rows hold a password hash that is not sealed", n)
	}

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys under %q: %d, %v", prefix, len(keys), err)
	}
	for _, k := range keys {
		if v := redisValue(ctx, t, rdb, k); bytes.Contains(v, []byte(phcMarker)) {
			t.Errorf("Redis key %s holds a password hash in the clear", k)
		}
	}
}

// redisValue returns everything key holds, whatever its type.
func redisValue(ctx context.Context, t *testing.T, rdb *redis.Client, key string) []byte {
	t.Helper()
	typ, err := rdb.Type(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	switch typ {
	case "none":
	case "string":
		s, err := rdb.Get(ctx, key).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		parts = append(parts, s)
	case "hash":
		m, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range m {
			parts = append(parts, f, v)
		}
	case "stream":
		entries, err := rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			parts = append(parts, fmt.Sprint(e.Values))
		}
	case "list":
		parts, err = rdb.LRange(ctx, key, 0, -1).Result()
	case "set":
		parts, err = rdb.SMembers(ctx, key).Result()
	case "zset":
		parts, err = rdb.ZRange(ctx, key, 0, -1).Result()
	default:
		t.Fatalf("Redis key %s of type %s", key, typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.Join(parts, "\n"))
}
