package coord

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// maxPartitions bounds the partitions of one projector.
const maxPartitions = 1 << 16

// errRejoin reports that this member's node, or the directory of members or
// owners, vanished while its session lived (someone deleted them): the
// member joins again.
var errRejoin = errors.New("coord: projector nodes vanished; joining again")

// TokenBase is added to the creation zxid of an ownership node to make the
// fencing token: 2^40, above any Unix time in seconds, so ZooKeeper owners
// fence out a static coordinator's leftovers.
const TokenBase = 1 << 40

// Run takes part in the ownership of the partitions of projector name until
// ctx ends or z is closed; it implements projectors.Coordinator.
//
// Membership: in every ZooKeeper session, Run creates an ephemeral
// sequential node <root>/projectors/<name>/members/_c_<guid>-m-<seq> holding
// the member id, and watches the members.
//
// Assignment: the members are sorted by sequence number (join order), and
// partition p is assigned to the member at index p mod n, n being the number
// of members: a round robin, so shares differ by at most one partition. The
// assignment is recomputed on every membership change. It is a function of
// the member list alone, so all members agree once they have seen the same
// list; while they have not, two members may both want a partition, and the
// ownership node decides.
//
// Ownership: for each assigned partition p, Run creates the ephemeral node
// <root>/projectors/<name>/owners/<p> (in one transaction with a check that
// its membership node still exists, so a request delayed past the end of its
// session cannot create an ownership in the next one). If the node exists,
// the previous owner still holds it: Run watches it and tries again when it
// is deleted. The fencing token is the created node's creation zxid
// (Stat.Czxid). ZooKeeper orders all writes in one sequence of zxids, also
// across leader elections (the epoch is the high 32 bits); a new owner's
// node can only be created after the previous owner's node was deleted, by
// its owner or by the expiry of its session, so each owner of a partition
// gets a strictly greater token than every owner before it. Tokens are
// TokenBase + Czxid, so they stay above the static coordinator's (Unix
// seconds) and a deployment can move from static to ZooKeeper coordination.
//
// Work: once p is owned, work runs in a goroutine of its own with a context
// that is cancelled when p is no longer assigned to this member (cause
// ErrUnassigned), when the session is lost (cause ErrSessionLost), when ctx
// ends, or when z is closed (cause ErrClosed). The session is considered lost
// when the server reports it expired, and also, without waiting for a
// reconnection, when the connection has been down for a third of the session
// timeout: the client notices a silent connection after two thirds of the
// session timeout at most, so work stops before the server can expire the
// session and let another owner start. The ownership node is deleted only
// after work returned, so the next owner starts after this one stopped; work
// must therefore return promptly once its context is cancelled (after a
// session loss the node is gone regardless, and only the token fences a
// late owner out).
// When work returns, by itself or with an error, while p is still assigned,
// the error is logged and work is started again after a backoff (250ms,
// doubling up to 30s) with a new ownership node, hence a new token.
//
// Run returns nil when ctx ends, ErrClosed when z is closed, and an error for
// invalid arguments or if the projector's nodes cannot be created. It
// returns after every work call returned and the member node was removed
// (unless the session was lost: the server removes its nodes).
func (z *ZooKeeper) Run(ctx context.Context, name string, partitions int, work func(ctx context.Context, partition int, token uint64) error) error {
	var errs []error
	if err := validSegment("projector name", name); err != nil {
		errs = append(errs, err)
	}
	if partitions < 1 || partitions > maxPartitions {
		errs = append(errs, fmt.Errorf("coord: partitions must be 1..%d, got %d", maxPartitions, partitions))
	}
	if work == nil {
		errs = append(errs, errors.New("coord: work is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := z.begin(); err != nil {
		return err
	}
	defer z.end()
	ctx, cancel := z.scope(ctx)
	defer cancel()

	m := &member{
		z:          z,
		name:       name,
		partitions: partitions,
		work:       work,
		log:        z.log.With("projector", name),
		membersDir: z.path("projectors", name, "members"),
		ownersDir:  z.path("projectors", name, "owners"),
	}
	b := newBackoff()
	for {
		for _, dir := range []string{m.membersDir, m.ownersDir} {
			if err := z.ensurePath(ctx, dir); err != nil {
				return result(ctx, err)
			}
		}
		s, err := z.waitSession(ctx)
		if err != nil {
			return result(ctx, err)
		}
		m.epoch(ctx, s)
		if ctx.Err() != nil {
			return result(ctx, ctx.Err())
		}
		if !s.live() {
			b.reset()
			continue
		}
		// The epoch ended in a live session: the member node vanished or
		// could not be created. Join again after a pause.
		if err := b.wait(ctx); err != nil {
			return result(ctx, err)
		}
	}
}

// result turns the end of Run into its error: nil when its context ended,
// ErrClosed when z closed.
func result(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	if errors.Is(context.Cause(ctx), ErrClosed) {
		return ErrClosed
	}
	return nil
}

// member is one Run.
type member struct {
	z          *ZooKeeper
	name       string
	partitions int
	work       func(ctx context.Context, partition int, token uint64) error
	log        *slog.Logger
	membersDir string
	ownersDir  string
}

// epoch is a member's life in one session: from its member node's creation
// until the session is lost, the member node vanishes or Run ends.
type epoch struct {
	m      *member
	sess   *session
	node   string // path of this member's node
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelCauseFunc
	slots  map[int]context.CancelCauseFunc // running partition goroutines
	exited chan int                        // partition goroutines that returned
}

// epoch runs the member in session s and returns after every work call
// returned and the member node was removed (or the session was lost).
func (m *member) epoch(ctx context.Context, s *session) {
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	defer stop()

	node, err := m.join(ectx, s)
	if err != nil {
		if ectx.Err() == nil {
			m.log.Warn("coord: joining failed", "err", err)
		}
		return
	}
	e := &epoch{
		m:      m,
		sess:   s,
		node:   node,
		log:    m.log.With("session", sessionHex(s.id), "node", path.Base(node)),
		ctx:    ectx,
		cancel: cancel,
		slots:  make(map[int]context.CancelCauseFunc),
		exited: make(chan int, m.partitions),
	}
	e.log.Info("coord: joined")
	e.loop()

	// The partition goroutines' contexts derive from ectx, which has ended.
	cause := context.Cause(ectx)
	for len(e.slots) > 0 {
		delete(e.slots, <-e.exited)
	}
	leave := m.z.jan.add(&cleanup{what: "leave " + node, run: func(c *zk.Conn) error {
		if err := c.Delete(node, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		return nil
	}})
	select {
	case <-leave.done:
	case <-s.ctx.Done():
	}
	e.log.Info("coord: left", "cause", cause)
}

// join creates the member node in session s and returns its path. The
// node's name starts with a random prefix, so that a create whose answer was
// lost can be found, and removed if the join is given up.
func (m *member) join(ctx context.Context, s *session) (string, error) {
	z := m.z
	prefix := "_c_" + strings.ToLower(rand.Text()) + "-m-"
	b := newBackoff()
	for tried := false; ; tried = true {
		node, err := m.tryJoin(s, prefix, tried)
		if err == nil {
			return node, nil
		}
		if transient(err) {
			err = b.wait(ctx)
		}
		if err != nil {
			dir := m.membersDir
			z.jan.add(&cleanup{what: "remove " + dir + "/" + prefix + "*", run: func(c *zk.Conn) error {
				children, _, err := c.Children(dir)
				if err != nil {
					return err
				}
				for _, child := range children {
					if !strings.HasPrefix(child, prefix) {
						continue
					}
					if err := c.Delete(dir+"/"+child, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
						return err
					}
				}
				return nil
			}})
			return "", err
		}
	}
}

// tryJoin creates the member node, or finds the one an earlier attempt
// created, and checks that it belongs to session s: a request queued while
// disconnected is sent in whatever session comes next.
func (m *member) tryJoin(s *session, prefix string, look bool) (string, error) {
	z := m.z
	node := ""
	if look {
		children, _, err := z.conn.Children(m.membersDir)
		if err != nil {
			return "", err
		}
		for _, child := range children {
			if strings.HasPrefix(child, prefix) {
				node = m.membersDir + "/" + child
			}
		}
	}
	if node == "" {
		var err error
		node, err = z.conn.Create(m.membersDir+"/"+prefix, []byte(z.cfg.MemberID), zk.FlagEphemeralSequential, z.acl)
		if err != nil {
			return "", err
		}
	}
	ok, st, err := z.conn.Exists(node)
	switch {
	case err != nil:
		return "", err
	case !ok || st.EphemeralOwner != s.id:
		return "", errSessionChanged
	}
	return node, nil
}

// loop follows the membership and starts and stops partition goroutines
// until the epoch ends.
func (e *epoch) loop() {
	z := e.m.z
	var (
		watch    <-chan zk.Event
		retry    <-chan time.Time
		assigned []bool
		refresh  = true
		b        = newBackoff()
	)
	for {
		if refresh {
			refresh = false
			children, _, ch, err := z.conn.ChildrenW(e.m.membersDir)
			if errors.Is(err, zk.ErrNoNode) {
				e.cancel(errRejoin)
				return
			}
			if err != nil {
				d := b.step()
				e.log.Warn("coord: listing members failed; retrying", "err", err, "backoff", d)
				retry = time.After(d)
			} else {
				b.reset()
				watch = ch
				members := sortMembers(children)
				i := slices.Index(members, path.Base(e.node))
				if i < 0 {
					e.cancel(errRejoin)
					return
				}
				assigned = assignment(e.m.partitions, i, len(members))
				e.log.Info("coord: membership changed", "members", len(members), "index", i, "assigned", countTrue(assigned))
				e.reconcile(assigned)
			}
		}
		select {
		case <-e.ctx.Done():
			return
		case <-watch:
			watch, refresh = nil, true
		case <-retry:
			retry, refresh = nil, true
		case p := <-e.exited:
			delete(e.slots, p)
			if assigned != nil {
				e.reconcile(assigned)
			}
		}
	}
}

// reconcile starts a goroutine for each assigned partition that has none,
// and stops those of partitions no longer assigned. A stopped goroutine
// whose partition is assigned again is restarted when it has returned.
func (e *epoch) reconcile(assigned []bool) {
	for p, want := range assigned {
		stop, running := e.slots[p]
		switch {
		case want && !running:
			ctx, cancel := context.WithCancelCause(e.ctx)
			e.slots[p] = cancel
			go e.partition(ctx, p)
		case !want && running:
			stop(ErrUnassigned)
		}
	}
}

// partition owns partition p and runs work until ctx ends, restarting work
// that returns while ctx is live.
func (e *epoch) partition(ctx context.Context, p int) {
	defer func() { e.exited <- p }()
	lg := e.log.With("partition", p)
	b := newBackoff()
	for ctx.Err() == nil {
		token, err := e.acquire(ctx, lg, p)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, errRejoin):
				e.cancel(err)
				return
			}
			lg.Warn("coord: acquiring partition failed; retrying", "err", err, "backoff", b.next)
			_ = b.wait(ctx)
			continue
		}
		lg.Info("coord: partition acquired", "token", token)
		start := time.Now()
		wctx, cancel := context.WithCancelCause(ctx)
		err = e.m.work(wctx, p, token)
		cancel(errors.New("coord: work returned"))
		e.release(p, token)
		if ctx.Err() != nil {
			lg.Info("coord: partition released", "token", token, "cause", context.Cause(ctx), "err", err)
			return
		}
		if time.Since(start) > maxBackoff {
			b.reset()
		}
		level := slog.LevelWarn
		if err != nil {
			level = slog.LevelError
		}
		lg.Log(ctx, level, "coord: work returned while the partition is still assigned; restarting it",
			"token", token, "err", err, "backoff", b.next)
		_ = b.wait(ctx)
	}
}

// ownerData is the content of an ownership node: who holds it, and a nonce
// that tells this acquisition's node from any other.
type ownerData struct {
	Member string `json:"member"`
	Node   string `json:"node"`
	Nonce  string `json:"nonce"`
}

// acquire creates partition p's ownership node, waiting for a previous
// owner's to go, and returns the fencing token.
func (e *epoch) acquire(ctx context.Context, lg *slog.Logger, p int) (uint64, error) {
	z := e.m.z
	owner := e.m.ownersDir + "/" + strconv.Itoa(p)
	data, err := json.Marshal(ownerData{Member: z.cfg.MemberID, Node: path.Base(e.node), Nonce: rand.Text()})
	if err != nil {
		return 0, err
	}
	b := newBackoff()
	waited := false
	for {
		if ctx.Err() != nil {
			return 0, context.Cause(ctx)
		}
		mr, createErr := z.conn.Multi(
			&zk.CheckVersionRequest{Path: e.node, Version: -1},
			&zk.CreateRequest{Path: owner, Data: data, Acl: z.acl, Flags: zk.FlagEphemeral},
		)
		switch err := createErr; {
		case err == nil, errors.Is(err, zk.ErrNodeExists), transient(err):
			// Look at the node: a transient error leaves unknown whether
			// it was created.
		case errors.Is(opErr(mr, 0), zk.ErrNoNode), errors.Is(opErr(mr, 1), zk.ErrNoNode):
			return 0, errRejoin // the member node or the owners directory is gone
		default:
			return 0, fmt.Errorf("coord: creating %s: %w", owner, err)
		}
		got, st, err := z.conn.Get(owner)
		switch {
		case errors.Is(err, zk.ErrNoNode) && !transient(createErr):
			continue // released meanwhile: try again
		case errors.Is(err, zk.ErrNoNode), transient(err):
			if err := b.wait(ctx); err != nil {
				return 0, err
			}
			continue
		case err != nil:
			return 0, fmt.Errorf("coord: reading %s: %w", owner, err)
		case st.EphemeralOwner == e.sess.id && bytes.Equal(got, data):
			return TokenBase + uint64(st.Czxid), nil
		}
		if !waited {
			waited = true
			lg.Info("coord: waiting for the previous owner to release the partition", "holder", string(got))
		}
		ok, _, ch, err := z.conn.ExistsW(owner)
		switch {
		case transient(err):
			if err := b.wait(ctx); err != nil {
				return 0, err
			}
			continue
		case err != nil:
			return 0, fmt.Errorf("coord: watching %s: %w", owner, err)
		case !ok:
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// release queues the deletion of partition p's ownership node created with
// token, once work has returned. The node is deleted only if it is still the
// one this acquisition created, in one transaction with a check that the
// member node exists (so the deletion cannot run in a later session, where
// the node may be someone else's).
func (e *epoch) release(p int, token uint64) {
	owner := e.m.ownersDir + "/" + strconv.Itoa(p)
	sid, node := e.sess.id, e.node
	e.m.z.jan.add(&cleanup{sid: sid, what: "release " + owner, run: func(c *zk.Conn) error {
		st, err := ownNode(c, owner, func(st *zk.Stat) bool {
			return st.EphemeralOwner == sid && TokenBase+uint64(st.Czxid) == token
		})
		if st == nil {
			return err // gone, or not this acquisition's node
		}
		mr, err := c.Multi(
			&zk.CheckVersionRequest{Path: node, Version: -1},
			&zk.DeleteRequest{Path: owner, Version: st.Version},
		)
		switch {
		case err == nil, errors.Is(opErr(mr, 1), zk.ErrNoNode):
			return nil
		case errors.Is(opErr(mr, 0), zk.ErrNoNode) && c.SessionID() == sid:
			// The member node was deleted under a live session (by hand):
			// the ownership node still is this session's, delete it alone.
			err := c.Delete(owner, st.Version)
			if errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrBadVersion) {
				return nil
			}
			return err
		case opErr(mr, 0) != nil:
			return nil //nolint:nilerr // the session ended, and its ephemeral nodes with it
		}
		return err
	}})
}

// opErr returns the error of the i-th operation of a Multi, nil if it
// succeeded or there is no such result.
func opErr(mr []zk.MultiResponse, i int) error {
	if i < len(mr) {
		return mr[i].Error
	}
	return nil
}

// sortMembers returns the member node names in join order: by the sequence
// number ZooKeeper appended, names without one last.
func sortMembers(children []string) []string {
	seq := func(name string) int64 {
		n, err := strconv.ParseInt(name[strings.LastIndex(name, "-")+1:], 10, 64)
		if err != nil {
			return math.MaxInt64
		}
		return n
	}
	out := slices.Clone(children)
	slices.SortFunc(out, func(a, b string) int {
		if c := cmp.Compare(seq(a), seq(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

// assignment returns which of partitions belong to the member at index i of
// n: p belongs to member p mod n.
func assignment(partitions, i, n int) []bool {
	out := make([]bool, partitions)
	for p := range out {
		out[p] = p%n == i
	}
	return out
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// ownNode returns the stat of node if it exists and mine says it is the
// caller's; nil and no error when it is gone or someone else's, nil and
// the error when reading it failed.
func ownNode(c *zk.Conn, node string, mine func(*zk.Stat) bool) (*zk.Stat, error) {
	_, st, err := c.Get(node)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil, nil
	case err != nil:
		return nil, err
	case !mine(st):
		return nil, nil
	}
	return st, nil
}
