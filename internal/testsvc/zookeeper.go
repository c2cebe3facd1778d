package testsvc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// ZooKeeper checks that the ZooKeeper servers named by MPIM_TEST_ZK (a
// comma-separated list of host:port, default 127.0.0.1:2181) answer and
// returns them with a path prefix unique to tb, of the form
// "/mpimt/<random>". The prefix does not exist yet: the test (or the code
// under test) creates it, as it would a chroot, and should delete what it
// created; ephemeral nodes vanish with their sessions anyway.
//
// Reachability is checked without a ZooKeeper client: every server must answer
// the "ruok" four-letter word with "imok" (or, where ruok is not whitelisted,
// answer "srvr"). Otherwise ZooKeeper fails tb with tb.Fatalf; it never skips.
func ZooKeeper(tb testing.TB) (servers []string, root string) {
	tb.Helper()
	list := env("MPIM_TEST_ZK", "127.0.0.1:2181")
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			servers = append(servers, s)
		}
	}
	for _, s := range servers {
		if err := zkAlive(s); err != nil {
			tb.Fatalf("testsvc: ZooKeeper at %s (MPIM_TEST_ZK) does not answer: %v\n\t%s", s, err, hint)
		}
	}
	return servers, "/mpimt/" + randomID(12)
}

// zkAlive reports whether addr is a ZooKeeper server that serves requests.
func zkAlive(addr string) error {
	r, err := fourLetterWord(addr, "ruok")
	if err != nil {
		return err
	}
	switch {
	case r == "imok":
		return nil
	case strings.Contains(r, "not in the whitelist"):
		r, err = fourLetterWord(addr, "srvr")
		if err != nil {
			return err
		}
		if strings.HasPrefix(r, "Zookeeper version") {
			return nil
		}
		return fmt.Errorf("srvr answered %q", r)
	default:
		return fmt.Errorf("ruok answered %q, want \"imok\"", r)
	}
}

// fourLetterWord sends cmd and returns everything the server writes before
// it closes the connection.
func fourLetterWord(addr, cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// DeleteZooKeeperTree deletes root and everything under it on servers. It
// tries again for up to 20 seconds while the tree is not empty: ephemeral
// nodes of sessions closing concurrently may come and go. A root that does
// not exist is no error.
func DeleteZooKeeperTree(servers []string, root string) error {
	c, _, err := zk.Connect(servers, 5*time.Second, zk.WithLogger(quietZK{}))
	if err != nil {
		return err
	}
	defer c.Close()
	var del func(p string) error
	del = func(p string) error {
		children, _, err := c.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, ch := range children {
			if err := del(p + "/" + ch); err != nil {
				return err
			}
		}
		if err := c.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		return nil
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := del(root)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// quietZK drops the ZooKeeper client's log lines.
type quietZK struct{}

func (quietZK) Printf(string, ...any) {}
