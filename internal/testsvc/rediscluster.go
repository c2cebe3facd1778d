package testsvc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Cluster layout of every test cluster: three masters, one replica each.
const (
	clusterMasters  = 3
	clusterReplicas = 1
	// clusterStartTimeout bounds starting the nodes, creating the cluster
	// and waiting for cluster_state:ok on every node.
	clusterStartTimeout = 60 * time.Second
)

// RedisClusterTarget is where a test may use a Redis Cluster.
type RedisClusterTarget struct {
	// Addrs are the host:port of every node, masters and replicas, as the
	// cluster was created (a failover may since have swapped roles).
	Addrs []string
	// Prefix is unique to the test, as RedisTarget.Prefix; keys with the
	// prefix are deleted from every master when the test ends. Hash tags
	// after it ("t:x:{p3}:log") decide the slot as they would without it.
	Prefix string
	// nodes are the processes of a cluster of StartRedisCluster, which the
	// test may kill and restart; nil for the shared cluster.
	nodes []*clusterNode
}

// shared is the cluster of this test binary, started by the first
// RedisCluster call.
var shared struct {
	once  sync.Once
	addrs []string
	err   error
}

// RedisCluster returns a Redis Cluster of three masters and three replicas
// on loopback with a key prefix unique to tb. The cluster is
// MPIM_TEST_REDIS_CLUSTER (comma-separated node addresses, e.g. one started
// by scripts/redis-cluster.sh) when that is set; otherwise it is started
// once per test binary, without persistence, and its nodes die with the
// test binary. If it cannot be started or does not answer, RedisCluster
// fails tb; it never skips. Tests that change a node's settings start a
// cluster of their own with StartRedisCluster instead.
func RedisCluster(tb testing.TB) *RedisClusterTarget {
	tb.Helper()
	if v := env("MPIM_TEST_REDIS_CLUSTER", ""); v != "" {
		addrs := strings.Split(v, ",")
		err := clusterOK(addrs, len(addrs))
		if err == nil {
			err = mastersHaveReplicas(addrs)
		}
		if err != nil {
			tb.Fatalf("testsvc: Redis Cluster at %s (MPIM_TEST_REDIS_CLUSTER): %v\n\tscripts/redis-cluster.sh start starts one", v, err)
		}
		return newClusterTarget(tb, addrs)
	}
	shared.once.Do(func() { shared.addrs, shared.err = startSharedCluster() })
	if shared.err != nil {
		tb.Fatalf("testsvc: starting a Redis Cluster: %v", shared.err)
	}
	return newClusterTarget(tb, shared.addrs)
}

// StartRedisCluster starts a Redis Cluster of three masters and three
// replicas of tb's own, every node with the extra redis-server arguments
// args (e.g. "--appendonly", "yes"), and stops it when tb ends. It fails tb
// if the cluster does not reach cluster_state:ok on every node.
func StartRedisCluster(tb testing.TB, args ...string) *RedisClusterTarget {
	tb.Helper()
	// The directory first: cleanups run last in, first out, so the nodes
	// stop before it is removed (a node rewriting its AOF in the
	// background would otherwise write into it while it goes).
	dir := tb.TempDir()
	var nodes []*clusterNode
	tb.Cleanup(func() { stopNodes(tb, nodes) })
	var err error
	nodes, err = startCluster(dir, func(cmd *exec.Cmd) error { return cmd.Start() }, args)
	if err != nil {
		tb.Fatalf("testsvc: starting a Redis Cluster: %v", err)
	}
	ct := newClusterTarget(tb, nodeAddrs(nodes))
	ct.nodes = nodes
	return ct
}

func newClusterTarget(tb testing.TB, addrs []string) *RedisClusterTarget {
	tb.Helper()
	ct := &RedisClusterTarget{Addrs: addrs, Prefix: "t:" + randomID(12) + ":"}
	tb.Cleanup(func() {
		if err := ct.eachMaster(func(c *respConn) error { return deleteKeysOneByOne(c, ct.Prefix) }); err != nil {
			tb.Logf("testsvc: deleting Redis Cluster keys %s*: %v", ct.Prefix, err)
		}
	})
	return ct
}

// Masters returns the addresses of the nodes that are masters now (of
// the nodes running: not one KillNode killed).
func (ct *RedisClusterTarget) Masters(tb testing.TB) []string {
	tb.Helper()
	var masters []string
	for _, a := range ct.running() {
		c, err := dialRESP(a)
		if err != nil {
			tb.Fatalf("testsvc: Redis Cluster node %s: %v", a, err)
		}
		role, err := nodeRole(c)
		c.Close()
		if err != nil {
			tb.Fatalf("testsvc: Redis Cluster node %s: %v", a, err)
		}
		if role == "master" {
			masters = append(masters, a)
		}
	}
	return masters
}

// eachMaster calls f with a connection to every running node that is a
// master now.
func (ct *RedisClusterTarget) eachMaster(f func(*respConn) error) error {
	var errs []error
	for _, a := range ct.running() {
		c, err := dialRESP(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if role, err := nodeRole(c); err != nil {
			errs = append(errs, err)
		} else if role == "master" {
			errs = append(errs, f(c))
		}
		c.Close()
	}
	return errors.Join(errs...)
}

// running returns the addresses of the nodes that run: all of them but
// those KillNode killed and RestartNode did not start again.
func (ct *RedisClusterTarget) running() []string {
	var addrs []string
	for _, a := range ct.Addrs {
		if n := ct.node(a); n == nil || !n.down() {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// node returns the process of the node at addr, nil when ct is not a
// cluster of StartRedisCluster.
func (ct *RedisClusterTarget) node(addr string) *clusterNode {
	for _, n := range ct.nodes {
		if n.addr == addr {
			return n
		}
	}
	return nil
}

// ownNode returns the process of the node at addr, failing tb unless ct
// is a cluster of StartRedisCluster with such a node.
func (ct *RedisClusterTarget) ownNode(tb testing.TB, addr string) *clusterNode {
	tb.Helper()
	n := ct.node(addr)
	if n == nil {
		tb.Fatalf("testsvc: %s is not a node of a Redis Cluster this test started (StartRedisCluster)", addr)
	}
	return n
}

// KillNode ends the node at addr with SIGKILL (a crash: no shutdown, its
// unreplicated writes lost) and waits until it is gone. The cluster must
// be one of StartRedisCluster.
func (ct *RedisClusterTarget) KillNode(tb testing.TB, addr string) {
	tb.Helper()
	n := ct.ownNode(tb, addr)
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatalf("testsvc: SIGKILL to redis-server %s: %v", addr, err)
	}
	<-n.exited
}

// RestartNode starts the node at addr, which KillNode killed, again with
// its command line, port and directory, and waits until it answers PING.
// Its nodes.conf keeps its identity: it rejoins the cluster, as a replica
// of the master that took its slots over if one did (with no persistence
// it comes back empty and copies that master's data).
func (ct *RedisClusterTarget) RestartNode(tb testing.TB, addr string) {
	tb.Helper()
	n := ct.ownNode(tb, addr)
	if !n.down() {
		tb.Fatalf("testsvc: redis-server %s is running; KillNode it first", addr)
	}
	cmd := exec.Command(n.cmd.Path, n.cmd.Args[1:]...)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testsvc: restarting redis-server %s: %v", addr, err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	exited := n.exited
	go func() { cmd.Wait(); close(exited) }()
	if err := waitUntil(time.Now().Add(clusterStartTimeout), n, func() error { return redisPing(addr) }); err != nil {
		tb.Fatalf("testsvc: restarting redis-server %s: %v", addr, err)
	}
}

// ReplicaOf returns the address of the replica of the master at addr (the
// first its ROLE lists), failing tb if it has none.
func (ct *RedisClusterTarget) ReplicaOf(tb testing.TB, master string) string {
	tb.Helper()
	rep, err := replicaOf(master)
	if err != nil {
		tb.Fatalf("testsvc: %v", err)
	}
	return rep
}

// replicaOf is ReplicaOf's lookup. A master lists a replica once it is
// online there: its full sync done and acknowledged, a moment after the
// replica itself reports its link up.
func replicaOf(master string) (string, error) {
	c, err := dialRESP(master)
	if err != nil {
		return "", fmt.Errorf("Redis Cluster node %s: %w", master, err)
	}
	r, err := c.do("ROLE")
	c.Close()
	if err != nil {
		return "", fmt.Errorf("Redis Cluster node %s: ROLE: %w", master, err)
	}
	// ["master", offset, [[ip, port, offset], ...]]
	if role, ok := r.([]any); ok && len(role) == 3 && role[0] == "master" {
		if replicas, ok := role[2].([]any); ok && len(replicas) > 0 {
			if rep, ok := replicas[0].([]any); ok && len(rep) >= 2 {
				return net.JoinHostPort(fmt.Sprint(rep[0]), fmt.Sprint(rep[1])), nil
			}
		}
	}
	return "", fmt.Errorf("Redis Cluster node %s is not a master with a replica: ROLE %v", master, r)
}

// Ready reports nil once every running node sees cluster_state:ok and
// knows every node, every running replica's link to its master is up and
// every slot's master runs; else what is not ready yet. After a master's
// kill it reports nil once its replica took over, before the killed node
// is back.
func (ct *RedisClusterTarget) Ready() error {
	running := ct.running()
	if err := clusterOK(running, len(ct.Addrs)); err != nil {
		return err
	}
	if m := len(ct.mastersOf(running)); m != clusterMasters {
		return fmt.Errorf("%d running masters, want %d", m, clusterMasters)
	}
	return nil
}

// mastersOf returns those of addrs whose ROLE is master.
func (ct *RedisClusterTarget) mastersOf(addrs []string) []string {
	var masters []string
	for _, a := range addrs {
		c, err := dialRESP(a)
		if err != nil {
			continue
		}
		if role, err := nodeRole(c); err == nil && role == "master" {
			masters = append(masters, a)
		}
		c.Close()
	}
	return masters
}

// deleteKeysOneByOne unlinks the keys under prefix on one node, one key per
// command: the keys of a page hash to different slots (CROSSSLOT together).
func deleteKeysOneByOne(c *respConn, prefix string) error {
	return scanPrefix(c, prefix, func(keys []any) error {
		for _, k := range keys {
			if _, err := c.do("UNLINK", k); err != nil {
				return err
			}
		}
		return nil
	})
}

func nodeRole(c *respConn) (string, error) {
	r, err := c.do("ROLE")
	if err != nil {
		return "", err
	}
	if reply, ok := r.([]any); ok && len(reply) > 0 {
		if s, ok := reply[0].(string); ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("unexpected ROLE reply %v", r)
}

// clusterNode is one redis-server process of a cluster.
type clusterNode struct {
	addr   string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// down reports whether the node's process has exited.
func (n *clusterNode) down() bool {
	select {
	case <-n.exited:
		return true
	default:
		return false
	}
}

func nodeAddrs(nodes []*clusterNode) []string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.addr
	}
	return addrs
}

// stopNodes kills the nodes and, when tb failed, logs the tail of each log.
func stopNodes(tb testing.TB, nodes []*clusterNode) {
	for _, n := range nodes {
		n.cmd.Process.Kill()
		<-n.exited
		if tb.Failed() {
			out, _ := os.ReadFile(n.log)
			tb.Logf("redis-server %s log (tail):\n%s", n.addr, tail(out, 2000))
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startSharedCluster starts the test binary's cluster in a directory of its
// own under the system temporary directory. The nodes are started from a
// goroutine locked to its OS thread for good, with a parent-death signal:
// they are killed when the test binary exits, however it exits. Directories
// of earlier test binaries that are gone are removed first.
func startSharedCluster() ([]string, error) {
	removeStaleClusterDirs()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("mpim-rcluster-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	starts := make(chan *exec.Cmd)
	started := make(chan error)
	go func() {
		// Never unlocked: the thread, the parent that Pdeathsig watches,
		// lives as long as the test binary.
		runtime.LockOSThread()
		for cmd := range starts {
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			started <- cmd.Start()
		}
		select {}
	}()
	defer close(starts)
	nodes, err := startCluster(dir, func(cmd *exec.Cmd) error { starts <- cmd; return <-started }, nil)
	if err != nil {
		for _, n := range nodes {
			n.cmd.Process.Kill()
		}
		return nil, err
	}
	return nodeAddrs(nodes), nil
}

// removeStaleClusterDirs removes the shared-cluster directories whose test
// binary (the pid in the name) is not running any more.
func removeStaleClusterDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "mpim-rcluster-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "mpim-rcluster-%d", &pid); err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// startCluster starts the six nodes in subdirectories of dir with start,
// joins them into a cluster with redis-cli and waits for cluster_state:ok on
// every node. It returns the nodes started, also with an error. Ports and
// cluster-bus ports come from FreeAddr's range, below the ephemeral ports.
func startCluster(dir string, start func(*exec.Cmd) error, args []string) ([]*clusterNode, error) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not installed (scripts/services.sh installs Redis): %w", bin, err)
		}
	}
	var nodes []*clusterNode
	for i := range clusterMasters * (1 + clusterReplicas) {
		addr, err := freeAddr()
		if err != nil {
			return nodes, err
		}
		bus, err := freeAddr()
		if err != nil {
			return nodes, err
		}
		_, port, _ := net.SplitHostPort(addr)
		_, busPort, _ := net.SplitHostPort(bus)
		ndir := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			return nodes, err
		}
		n := &clusterNode{addr: addr, log: filepath.Join(ndir, "redis.log"), exited: make(chan struct{})}
		n.cmd = exec.Command("redis-server", append([]string{"--port", port, "--cluster-port", busPort, "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
			"--dir", ndir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", n.log,
			"--protected-mode", "no"}, args...)...)
		if err := start(n.cmd); err != nil {
			return nodes, fmt.Errorf("starting redis-server: %w", err)
		}
		go func() { n.cmd.Wait(); close(n.exited) }()
		nodes = append(nodes, n)
	}
	deadline := time.Now().Add(clusterStartTimeout)
	for _, n := range nodes {
		if err := waitUntil(deadline, n, func() error { return redisPing(n.addr) }); err != nil {
			return nodes, fmt.Errorf("node %s: %w", n.addr, err)
		}
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, nodeAddrs(nodes)...),
		"--cluster-replicas", fmt.Sprint(clusterReplicas), "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		return nodes, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := waitUntil(deadline, nil, func() error { return clusterOK(nodeAddrs(nodes), len(nodes)) }); err != nil {
		return nodes, err
	}
	// A master counts a replica in WAIT, and lists it in ROLE, only once
	// the replica is online there, a moment after the replica reports its
	// link up (which clusterOK waits for).
	if err := waitUntil(deadline, nil, func() error { return mastersHaveReplicas(nodeAddrs(nodes)) }); err != nil {
		return nodes, err
	}
	return nodes, nil
}

// mastersHaveReplicas reports nil once every master among addrs lists
// clusterReplicas replicas in ROLE.
func mastersHaveReplicas(addrs []string) error {
	for _, a := range addrs {
		c, err := dialRESP(a)
		if err != nil {
			return err
		}
		r, err := c.do("ROLE")
		c.Close()
		if err != nil {
			return fmt.Errorf("node %s: ROLE: %w", a, err)
		}
		// ["master", offset, [[ip, port, offset], ...]]
		if role, ok := r.([]any); ok && len(role) == 3 && role[0] == "master" {
			if replicas, _ := role[2].([]any); len(replicas) < clusterReplicas {
				return fmt.Errorf("master %s lists %d replicas, want %d", a, len(replicas), clusterReplicas)
			}
		}
	}
	return nil
}

// waitUntil polls f every 50ms until it succeeds, deadline passes (f's last
// error) or node's process exits.
func waitUntil(deadline time.Time, node *clusterNode, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		if node != nil {
			select {
			case <-node.exited:
				out, _ := os.ReadFile(node.log)
				return fmt.Errorf("redis-server exited at start-up:\n%s", tail(out, 2000))
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %w", clusterStartTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clusterOK checks that every node of addrs answers CLUSTER INFO with
// cluster_state:ok and knows the cluster's known nodes, and that every
// replica among them is connected to its master.
func clusterOK(addrs []string, known int) error {
	for _, a := range addrs {
		c, err := dialRESP(a)
		if err != nil {
			return err
		}
		r, err := c.do("CLUSTER", "INFO")
		var role any
		if err == nil {
			role, err = c.do("ROLE")
		}
		c.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", a, err)
		}
		// A replica is ready once its link to the master is up: until then
		// a WAIT on its master counts no replica.
		if r, ok := role.([]any); ok && len(r) >= 4 && r[0] == "slave" && r[3] != "connected" {
			return fmt.Errorf("node %s: replica link %v, not connected", a, r[3])
		}
		info, _ := r.(string)
		lines := strings.Split(strings.ReplaceAll(info, "\r", ""), "\n")
		if !slices.Contains(lines, "cluster_state:ok") || !slices.Contains(lines, fmt.Sprintf("cluster_known_nodes:%d", known)) {
			return fmt.Errorf("node %s: cluster not ready: %s", a, strings.Join(lines[:min(len(lines), 6)], " "))
		}
	}
	return nil
}

// CommandCalls returns, for every node that is a master now, how many
// times it ran command (lower case, as INFO commandstats names it:
// "wait", "publish", "spublish") since it started.
func (ct *RedisClusterTarget) CommandCalls(tb testing.TB, command string) map[string]int64 {
	tb.Helper()
	calls := map[string]int64{}
	for _, a := range ct.Masters(tb) {
		c, err := dialRESP(a)
		if err != nil {
			tb.Fatalf("testsvc: Redis Cluster node %s: %v", a, err)
		}
		r, err := c.do("INFO", "commandstats")
		c.Close()
		if err != nil {
			tb.Fatalf("testsvc: Redis Cluster node %s: INFO commandstats: %v", a, err)
		}
		info, _ := r.(string)
		calls[a] = 0
		if _, rest, ok := strings.Cut(info, "cmdstat_"+command+":calls="); ok {
			n, _, _ := strings.Cut(rest, ",")
			if calls[a], err = strconv.ParseInt(n, 10, 64); err != nil {
				tb.Fatalf("testsvc: Redis Cluster node %s: cmdstat_%s calls %q: %v", a, command, n, err)
			}
		}
	}
	return calls
}
