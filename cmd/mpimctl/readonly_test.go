package main

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// keysUnder lists every key of a prefix.
func keysUnder(t *testing.T, addr, prefix string) []string {
	t.Helper()
	return (&testsvc.RedisTarget{Addr: addr, Prefix: prefix}).Keys(t)
}

// readOnlyCommands are the commands that read the log (tap with a group
// creates that group, but only on a deployment that exists).
var readOnlyCommands = [][]string{
	{"tail", "--limit", "1"},
	{"tail", "--from-start", "--limit", "1"},
	{"export"},
	{"stats"},
	{"quarantine", "list"},
	{"quarantine", "drop", "cache", "1", "5-1"},
	{"tap", "--group", "g", "--limit", "1"},
	{"tap", "--group", "g", "--no-ack", "--limit", "1"},
	{"tap", "dlq", "list", "--group", "g"},
}

func TestReadOnlyCommandsFailOnAMissingDeploymentAndCreateNothing(t *testing.T) {
	rt := testsvc.Redis(t) // a prefix of its own that holds no deployment
	dsn := testsvc.MySQL(t)
	base := []string{"--redis-addr", rt.Addr, "--prefix", rt.Prefix, "--partitions", "4"}
	cmds := append(slices.Clone(readOnlyCommands), []string{"replay", "--mysql", dsn})
	for _, cmd := range cmds {
		args := append(slices.Clone(cmd), base...)
		if cmd[0] == "quarantine" {
			args = append([]string{cmd[0], cmd[1]}, append(base, cmd[2:]...)...)
		}
		if cmd[0] == "replay" {
			args = append(args, "mysql")
		}
		_, _, err := ctl(t, args...)
		want := `no mpim deployment at prefix "` + rt.Prefix + `" on redis ` + rt.Addr
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mpimctl %v: error %v, want one saying %s", args, err, want)
		}
		if keys := keysUnder(t, rt.Addr, rt.Prefix); len(keys) != 0 {
			t.Fatalf("mpimctl %v created %d keys under the wrong prefix: %v", args, len(keys), keys)
		}
	}
}

func TestReadOnlyCommandsLeaveADeploymentAsItWas(t *testing.T) {
	base := seed(t)
	addr, prefix := base[1], base[3]
	before := keysUnder(t, addr, prefix)
	for _, cmd := range [][]string{{"tail", "--from-start", "--limit", "3"}, {"export"}, {"stats"}, {"quarantine", "list"}} {
		args := append(slices.Clone(cmd), base...)
		if cmd[0] == "quarantine" {
			args = append([]string{cmd[0], cmd[1]}, base...)
		}
		if _, _, err := ctl(t, args...); err != nil {
			t.Fatalf("mpimctl %v: %v", args, err)
		}
		if after := keysUnder(t, addr, prefix); !slices.Equal(after, before) {
			t.Fatalf("mpimctl %v changed the keys of the deployment:\nbefore %v\nafter  %v", args, before, after)
		}
	}
	// tap creates the group it names on an existing deployment.
	if _, _, err := ctl(t, append([]string{"tap", "--group", "g", "--limit", "1"}, base...)...); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for p := range 4 {
		groups, err := rdb.XInfoGroups(context.Background(), prefix+"{p"+strconv.Itoa(p)+"}:log").Result()
		if err != nil || len(groups) != 1 || groups[0].Name != "g" {
			t.Errorf("partition %d after tap --group g: groups %v, %v", p, groups, err)
		}
	}
}

func TestTailLimitIsExactAcrossPartitions(t *testing.T) {
	base := seed(t)
	out, _, err := ctl(t, append([]string{"stats", "--json"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	var st stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	used := 0
	var total int64
	for _, p := range st.Partitions {
		if p.Length > 0 {
			used++
		}
		total += p.Length
	}
	if used < 2 {
		t.Fatalf("the seeded events sit in %d partition(s); the test needs several", used)
	}
	for n := 1; n < int(total); n++ {
		out, _, err := ctl(t, append([]string{"tail", "--from-start", "--json", "--limit", strconv.Itoa(n)}, base...)...)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != n {
			t.Errorf("tail --limit %d printed %d events of %d in %d partitions:\n%s", n, len(lines), total, used, out)
		}
	}
	if _, _, err := ctl(t, append([]string{"tail", "--limit", "-1"}, base...)...); err == nil || !strings.Contains(err.Error(), "--limit must not be negative") {
		t.Errorf("tail --limit -1: %v", err)
	}
}
