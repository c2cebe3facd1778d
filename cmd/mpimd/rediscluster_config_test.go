package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --redis-addr takes a comma-separated list, --redis-cluster asks for a
// cluster client, and the prefix must not carry a hash tag; bad values are
// refused at start-up with the problem named.
func TestRedisClusterSettingsAreValidated(t *testing.T) {
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis-addr", "127.0.0.1:7000,"}, "element 2 is empty"},
		{[]string{"--redis-addr", "127.0.0.1:7000,127.0.0.1:99999"}, "port must be 1..65535"},
		{[]string{"--redis-addr", "127.0.0.1"}, "missing port"},
		{[]string{"--redis-addr", "127.0.0.1:7000,127.0.0.1:7001", "--redis-db", "1"}, "cluster has database 0 only"},
		{[]string{"--redis-addr", "127.0.0.1:7000", "--redis-cluster", "--redis-db", "3"}, "cluster has database 0 only"},
		{[]string{"--redis-addr", "127.0.0.1:7000", "--redis-db", "16"}, "database must be 0..15"},
		{[]string{"--redis-addr", "embedded", "--mysql", "embedded", "--redis-cluster"}, "not a cluster"},
		{[]string{"--prefix", "{app}:"}, "must not contain { or }"},
		{[]string{"--prefix", "app}"}, "must not contain { or }"},
	} {
		err := (&Main{Stdout: io.Discard, Stderr: io.Discard}).ParseFlags("all", bad.args)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want an error saying %q", bad.args, err, bad.want)
		}
	}
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("all", []string{"--redis-addr", "127.0.0.1:7000, 127.0.0.1:7001"}); err != nil {
		t.Fatal(err)
	}
	if rc, err := m.Config.redisConfig(); err != nil || len(rc.Addrs) != 2 || rc.Addrs[1] != "127.0.0.1:7001" {
		t.Fatalf("two addresses: %+v, %v", rc, err)
	}
	// The environment and the config file say the same.
	t.Setenv("MPIM_REDIS_ADDR", "127.0.0.1:7000")
	t.Setenv("MPIM_REDIS_CLUSTER", "true")
	m = &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("all", nil); err != nil || !m.Config.RedisCluster {
		t.Fatalf("MPIM_REDIS_CLUSTER: cluster %v, %v", m.Config.RedisCluster, err)
	}
	os.Unsetenv("MPIM_REDIS_ADDR") // t.Setenv restores both
	os.Unsetenv("MPIM_REDIS_CLUSTER")
	file := filepath.Join(t.TempDir(), "mpimd.json")
	if err := os.WriteFile(file, []byte(`{"redis-addr": ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"], "redis-db": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := (&Main{Stdout: io.Discard, Stderr: io.Discard}).ParseFlags("all", []string{"--config", file})
	if err == nil || !strings.Contains(err.Error(), "cluster has database 0 only") {
		t.Fatalf("config file with three addresses and database 1: %v", err)
	}
}
