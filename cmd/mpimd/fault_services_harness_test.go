package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/mpim/mpim/internal/testsvc"
)

// This file is the harness of fault_services_test.go: private MariaDB and
// ZooKeeper servers, each on a loopback port and in a temporary directory
// of its own, configured as production runs them (every commit flushed to
// disk), that a test kills (SIGKILL: a crash, no shutdown) and starts again
// on the same port and data directory, so the restart recovers from what
// reached the disk. The shared servers other tests use are never touched. A
// missing server binary fails the test: it is never skipped.

// serviceProc is a private server process that can be killed and started
// again with the same command line.
type serviceProc struct {
	t    *testing.T
	name string
	addr string   // host:port it serves on
	argv []string // the command line of every start
	log  string   // stdout and stderr of every start, appended
	// serving reports nil once the server answers requests.
	serving func() error

	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// newServiceProc returns a serviceProc that is stopped when the test ends
// (and whose log is shown if the test failed); it is not started yet.
func newServiceProc(t *testing.T, name, addr, dir string, serving func() error, argv ...string) *serviceProc {
	s := &serviceProc{t: t, name: name, addr: addr, argv: argv, log: filepath.Join(dir, name+".out"), serving: serving}
	t.Cleanup(func() {
		if s.running() {
			s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(s.log)
			if len(out) > 8<<10 {
				out = out[len(out)-8<<10:]
			}
			t.Logf("%s output (%s):\n%s", name, s.log, out)
		}
	})
	return s
}

// start runs the server and waits until it serves; it fails the test if
// the server exits or does not serve within 60s.
func (s *serviceProc) start() {
	s.t.Helper()
	s.starts++
	out, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	fmt.Fprintf(out, "==== start %d: %s\n", s.starts, strings.Join(s.argv, " "))
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	err = s.cmd.Start()
	if err != nil {
		out.Close()
		s.t.Fatalf("starting %s: %v", s.name, err)
	}
	s.exited = make(chan struct{})
	cmd, exited := s.cmd, s.exited
	go func() {
		cmd.Wait()
		out.Close()
		close(exited)
	}()
	var last error
	waitUntil(s.t, fmt.Sprintf("%s serving on %s (start %d)", s.name, s.addr, s.starts), func() bool {
		if !s.running() {
			s.t.Fatalf("%s exited at start %d (%v); its output is in %s", s.name, s.starts, cmd.ProcessState, s.log)
		}
		last = s.serving()
		return last == nil
	})
}

func (s *serviceProc) running() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// kill ends the server with SIGKILL (no shutdown: whatever it had not
// written is lost, as in a crash) and waits until it is gone.
func (s *serviceProc) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("SIGKILL to %s: %v", s.name, err)
	}
	<-s.exited
}

// crash kills the server, calls during while it is down and starts it
// again on the same port and data directory. How long it stays down is up
// to during, which waits for conditions, not for a time. It returns how
// long the server did not serve: from the kill until it answered again.
func (s *serviceProc) crash(during func()) time.Duration {
	s.t.Helper()
	killed := time.Now()
	s.kill()
	restarted := false
	defer func() {
		if !restarted { // during failed the test: leave the server up for the cleanups
			s.start()
		}
	}()
	during()
	restarted = true
	s.start()
	return time.Since(killed)
}

// lookBinary returns the path of the first of names found on PATH or in
// the sbin directories, failing the test if there is none.
func lookBinary(t *testing.T, what string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			p := filepath.Join(dir, n)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	t.Fatalf("%s is not installed (looked for %s): run scripts/services.sh, which installs it", what, strings.Join(names, ", "))
	return ""
}

// faultMariaDB is a private mariadbd: a data directory initialised for the
// test, root without a password over TCP, production durability (the redo
// log flushed at every commit, the binary log on and synced at every
// commit, the doublewrite buffer on, as by default).
type faultMariaDB struct {
	*serviceProc
	dsn    string // the server's DSN without a database, for testsvc.MySQL
	errLog string // the server's error log, appended by every start
}

func startFaultMariaDB(t *testing.T) *faultMariaDB {
	t.Helper()
	server := lookBinary(t, "the MariaDB server", "mariadbd", "mysqld")
	installDB := lookBinary(t, "mariadb-install-db", "mariadb-install-db", "mysql_install_db")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// A socket path must fit in 108 bytes: keep it short.
	sockDir, err := os.MkdirTemp("", "mdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	install := exec.Command(installDB, "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", installDB, err, out)
	}
	addr := testsvc.FreeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	m := &faultMariaDB{dsn: "root@tcp(" + addr + ")/", errLog: filepath.Join(dir, "mariadbd.err")}
	m.serviceProc = newServiceProc(t, "mariadbd", addr, dir, m.ping, server, "--no-defaults",
		"--datadir="+data, "--socket="+filepath.Join(sockDir, "sock"), "--pid-file="+filepath.Join(dir, "mariadbd.pid"),
		"--port="+port, "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
		"--log-bin="+filepath.Join(data, "binlog"), "--sync-binlog=1", "--innodb-flush-log-at-trx-commit=1",
		"--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
		"--max-connections=500", "--log-error="+m.errLog)
	m.start()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(m.errLog)
			if len(out) > 8<<10 {
				out = out[len(out)-8<<10:]
			}
			t.Logf("mariadbd error log:\n%s", out)
		}
	})
	return m
}

// ping reports whether the server accepts root and answers.
func (m *faultMariaDB) ping() error {
	cfg, err := mysql.ParseDSN(m.dsn)
	if err != nil {
		return err
	}
	cfg.Timeout = time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// lastStartLog returns what the server wrote to its error log since it
// last started.
func (m *faultMariaDB) lastStartLog() string {
	m.t.Helper()
	out, err := os.ReadFile(m.errLog)
	if err != nil {
		m.t.Fatal(err)
	}
	s := string(out)
	if i := strings.LastIndex(s, "Starting MariaDB"); i >= 0 {
		s = s[i:]
	}
	return s
}

// zkHome is where Debian's zookeeper package installs its scripts.
const zkHome = "/usr/share/zookeeper"

// startFaultZooKeeper starts a private standalone ZooKeeper: the Debian
// package's jars (the classpath its zkEnv.sh sets), a zoo.cfg of the
// test's own with its data directory and client port, no admin server, and
// forceSync=yes (the default: every transaction is fsynced to the
// transaction log before it is acknowledged).
func startFaultZooKeeper(t *testing.T) *serviceProc {
	t.Helper()
	java := lookBinary(t, "java (for ZooKeeper)", "java")
	env := filepath.Join(zkHome, "bin", "zkEnv.sh")
	if _, err := os.Stat(env); err != nil {
		t.Fatalf("ZooKeeper is not installed (%v): run scripts/services.sh, which installs Debian's zookeeper package", err)
	}
	out, err := exec.Command("bash", "-c", `. "$1" >/dev/null 2>&1; printf %s "$CLASSPATH"`, "_", env).Output()
	cp := strings.TrimSpace(string(out))
	if err != nil || !strings.Contains(cp, "zookeeper") {
		t.Fatalf("no ZooKeeper classpath from %s (%v): got %q", env, err, cp)
	}
	// Debian's classpath has no SLF4J binding; without one ZooKeeper logs
	// nothing, so add the simple one (errors only) when it is there.
	logging := []string{}
	if simple := "/usr/share/java/slf4j-simple.jar"; fileExists(simple) {
		cp += ":" + simple
		logging = append(logging, "-Dorg.slf4j.simpleLogger.defaultLogLevel=error")
	}
	dir := t.TempDir()
	addr := testsvc.FreeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf("tickTime=500\nminSessionTimeout=1000\nmaxSessionTimeout=60000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\n"+
		"maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nforceSync=yes\n", filepath.Join(dir, "data"), port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string{java, "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-cp", cp}, logging...),
		"org.apache.zookeeper.server.ZooKeeperServerMain", cfg)
	z := newServiceProc(t, "zookeeper", addr, dir, func() error { return zkRuok(addr) }, argv...)
	z.start()
	return z
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// zkRuok reports whether the ZooKeeper at addr answers "ruok" with "imok".
func zkRuok(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "ruok"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(bytes.TrimSpace(b), []byte("imok")) {
		return errors.New("ruok answered " + string(b))
	}
	return nil
}

// flagValue returns the value following flag name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
