package coord

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Config configures a ZooKeeper coordinator. The zero value of every field
// but Servers has a default.
type Config struct {
	// Servers are the ZooKeeper ensemble's host:port addresses.
	Servers []string
	// Root is the absolute path under which every node of the deployment
	// lives (default "/mpim"). It is created if absent.
	Root string
	// SessionTimeout is the ZooKeeper session timeout asked for (default
	// 10s). The server raises it to at least 2×tickTime (4s with the usual
	// tickTime of 2s) and lowers it to at most 20×tickTime. After losing the
	// connection, the coordinator presumes the session lost a third of
	// SessionTimeout later and stops its work (see ZooKeeper.Run); that is
	// early enough only if the server does not lower the timeout, so keep
	// it within the server's bounds.
	SessionTimeout time.Duration
	// MemberID names this process in membership nodes and logs (default
	// "<hostname>-<pid>-<random>").
	MemberID string
	// Logger receives the coordinator's logs and, at debug level, the
	// ZooKeeper client's (default: discard).
	Logger *slog.Logger

	// dialer replaces net.DialTimeout; tests use it to cut the connection
	// without closing the session.
	dialer zk.Dialer
}

// withDefaults returns c with every unset field defaulted.
func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = "/mpim"
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.MemberID == "" {
		c.MemberID = defaultMemberID()
	}
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	return c
}

// Validate reports every problem of the configuration, defaults applied,
// joined with errors.Join; nil means New will accept it.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("coord: no ZooKeeper servers"))
	}
	for _, s := range c.Servers {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, ", \t\n") {
			errs = append(errs, fmt.Errorf("coord: invalid ZooKeeper server address %q", s))
		}
	}
	if err := validRoot(c.Root); err != nil {
		errs = append(errs, err)
	}
	if c.SessionTimeout < time.Second || c.SessionTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("coord: session timeout must be 1s..10m, got %s", c.SessionTimeout))
	}
	if len(c.MemberID) > 200 || strings.ContainsFunc(c.MemberID, isControl) {
		errs = append(errs, fmt.Errorf("coord: member id %q must be at most 200 printable characters", c.MemberID))
	}
	return errors.Join(errs...)
}

// validRoot checks that root is an absolute ZooKeeper path other than "/",
// without empty, "." or ".." segments and without a trailing slash.
func validRoot(root string) error {
	if !strings.HasPrefix(root, "/") || root == "/" || strings.HasSuffix(root, "/") {
		return fmt.Errorf("coord: root %q must be an absolute path other than \"/\", without a trailing slash", root)
	}
	for _, seg := range strings.Split(root[1:], "/") {
		if err := validSegment("root segment", seg); err != nil {
			return err
		}
	}
	return nil
}

// validSegment checks that s can be one segment of a ZooKeeper path: the
// name of a projector, gateway or setting.
func validSegment(what, s string) error {
	switch {
	case s == "", s == ".", s == "..", len(s) > 200, strings.Contains(s, "/"), strings.ContainsFunc(s, isControl):
		return fmt.Errorf("coord: invalid %s %q: want 1..200 printable characters, no \"/\", not \".\" or \"..\"", what, s)
	}
	return nil
}

func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0xd800 && r <= 0xf8ff) || r >= 0xfff0
}

func defaultMemberID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + strings.ToLower(rand.Text()[:6])
}
