package coord

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEnsureSettingKeepsTheFirstValue(t *testing.T) {
	env := newEnv(t)
	z1 := env.coordinator(t, "first", nil)
	z2 := env.coordinator(t, "second", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		z           *ZooKeeper
		value, want string
	}{
		{z1, "16", "16"},
		{z1, "16", "16"},
		{z2, "32", "16"},
	} {
		got, err := c.z.EnsureSetting(ctx, "partitions", c.value)
		if err != nil || got != c.want {
			t.Errorf("EnsureSetting(partitions, %s) = %q, %v; want %q", c.value, got, err, c.want)
		}
	}
	if got, err := z2.EnsureSetting(ctx, "other", ""); err != nil || got != "" {
		t.Errorf("EnsureSetting(other, \"\") = %q, %v; want the empty value stored", got, err)
	}
	if _, err := z1.EnsureSetting(ctx, "a/b", "x"); err == nil {
		t.Error("a key with a slash accepted")
	}
	z1.Close()
	if _, err := z1.EnsureSetting(ctx, "partitions", "16"); !errors.Is(err, ErrClosed) {
		t.Errorf("EnsureSetting after Close: %v, want ErrClosed", err)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	if err := (Config{Servers: []string{"127.0.0.1:2181"}}).Validate(); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
	err := Config{Root: "relative/", SessionTimeout: time.Millisecond, MemberID: "bad\nid"}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"no ZooKeeper servers", "root", "session timeout", "member id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, missing %q", err, want)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted an empty config")
	}
}
