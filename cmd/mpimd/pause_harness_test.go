package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mpim/mpim/domain"
)

// freezeProxy forwards TCP connections from a loopback port of its own to a
// server (a process's ZooKeeper connection, in the pause test). Frozen, it
// forwards nothing in either direction and closes nothing: bytes and ends of
// stream wait for the thaw. A process behind a frozen proxy that wakes from
// SIGSTOP finds its connection open and silent, as after a network
// partition, so it learns that its session is gone only from its own
// timers; until then it works on as an owner, which is what fencing must
// stop.
type freezeProxy struct {
	t      *testing.T
	addr   string
	target string
	ln     net.Listener

	mu     sync.Mutex
	thawed chan struct{} // closed while not frozen
	conns  []net.Conn
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{t: t, addr: ln.Addr().String(), target: target, ln: ln, thawed: make(chan struct{})}
	close(p.thawed)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *freezeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies from src to dst, holding each chunk and the end of the stream
// while the proxy is frozen.
func (p *freezeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		<-p.gate()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// gate returns a channel that is closed while the proxy is not frozen.
func (p *freezeProxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.thawed
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.thawed = make(chan struct{})
}

func (p *freezeProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

func (p *freezeProxy) close() {
	p.ln.Close()
	p.thaw()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// ownership maps projector -> partition -> the member id holding its
// owner node, as the ZooKeeper tree under root says.
type ownership map[string]map[int]string

// readOwnership reads every projector's owner nodes.
func readOwnership(c *zk.Conn, root string) (ownership, error) {
	names, _, err := c.Children(root + "/projectors")
	if err != nil {
		return nil, err
	}
	out := ownership{}
	for _, name := range names {
		dir := root + "/projectors/" + name + "/owners"
		parts, _, err := c.Children(dir)
		if err != nil {
			return nil, err
		}
		out[name] = map[int]string{}
		for _, ps := range parts {
			data, _, err := c.Get(dir + "/" + ps)
			if errors.Is(err, zk.ErrNoNode) {
				continue // released meanwhile
			}
			if err != nil {
				return nil, err
			}
			var o struct{ Member string }
			if err := json.Unmarshal(data, &o); err != nil {
				return nil, fmt.Errorf("%s/%s: %w", dir, ps, err)
			}
			p, err := strconv.Atoi(ps)
			if err != nil {
				return nil, fmt.Errorf("%s/%s: %w", dir, ps, err)
			}
			out[name][p] = o.Member
		}
	}
	return out, nil
}

// ownedBy reports whether each of the projectors has every one of the
// partitions owned, each by one of members.
func (o ownership) ownedBy(projectors []string, partitions int, members ...string) bool {
	for _, name := range projectors {
		if len(o[name]) != partitions {
			return false
		}
		for _, m := range o[name] {
			if !slices.Contains(members, m) {
				return false
			}
		}
	}
	return true
}

// partitionsOf returns the partitions member owns in projector name.
func (o ownership) partitionsOf(name, member string) []int {
	var ps []int
	for p, m := range o[name] {
		if m == member {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// sharedByP0AndP1 returns whether members p0 and p1 own every one of
// partitions of every projector, settled: p1 has its half (partition p
// goes to member p mod 2).
func sharedByP0AndP1(partitions int) func(ownership) bool {
	return func(o ownership) bool {
		if !o.ownedBy(projectorNames, partitions, "p0", "p1") {
			return false
		}
		for _, name := range projectorNames {
			if len(o.partitionsOf(name, "p1")) != partitions/2 {
				return false
			}
		}
		return true
	}
}

// waitOwners waits until the ownership in the ZooKeeper tree under root
// satisfies cond, and returns it.
func waitOwners(t *testing.T, server, root, what string, cond func(ownership) bool) ownership {
	t.Helper()
	c, _, err := zk.Connect([]string{server}, 5*time.Second, zk.WithLogger(zkQuiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var o ownership
	waitUntil(t, what, func() bool {
		var err error
		o, err = readOwnership(c, root)
		return err == nil && cond(o)
	})
	return o
}

// startProjectorVia starts a projector of fc that reaches ZooKeeper at
// zkAddr (a proxy) instead of fc's server.
func (fc *faultCluster) startProjectorVia(t *testing.T, member, zkAddr string) *mpimdProc {
	t.Helper()
	args := slices.Clone(fc.common)
	args[slices.Index(args, "--zookeeper")+1] = zkAddr
	return startMpimd(t, fc.bin, fc.logDir, "projector-"+member, append(append([]string{"projector"}, args...), "--member-id", member)...)
}

// trafficInto makes sure the senders write to at least one partition that
// member owns in every projector: if none of their conversations is in
// one, it registers users until one whose direct conversation with the
// first sender's user is, and adds that conversation to the first sender's
// routes.
func (fc *faultCluster) trafficInto(t *testing.T, own ownership, member string, senders []faultSender, gid string) {
	t.Helper()
	store := openLog(t, fc.redisAddr, fc.prefix, fc.partitions)
	written := map[int]bool{store.PartitionOf(domain.GroupConversation(domain.GroupID(gid)).PartitionKey()): true}
	for _, s := range senders {
		for _, r := range s.routes {
			if r.to != nil {
				written[store.PartitionOf(domain.DirectConversation(domain.UserID(s.d.user.id), domain.UserID(r.to.id)).PartitionKey())] = true
			}
		}
	}
	missing := func() bool {
		for _, name := range projectorNames {
			if !slices.ContainsFunc(own.partitionsOf(name, member), func(p int) bool { return written[p] }) {
				return true
			}
		}
		return false
	}
	from := senders[0].d.user
	for i := 0; missing(); i++ {
		if i == 32 {
			t.Fatalf("no direct conversation of %s in %s's partitions %v after %d users", from.name, member, own, i)
		}
		u := fc.register(t, fc.gateways[0], fmt.Sprintf("extra%d", i))
		p := store.PartitionOf(domain.DirectConversation(domain.UserID(from.id), domain.UserID(u.id)).PartitionKey())
		if !written[p] {
			written[p] = true
			senders[0].routes = append(senders[0].routes, faultRoute{to: u, members: []*e2eUser{from, u}})
		}
	}
}
