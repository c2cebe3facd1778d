package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/go-zookeeper/zk"
)

// GatewayInfo is what a gateway publishes about itself for the dispatcher.
type GatewayInfo struct {
	// ID is the gateway's id, the name of its node. Gateways fills it in;
	// RegisterGateway takes the id as an argument and overwrites it.
	ID string `json:"id"`
	// Addr is where the gateway is reached.
	Addr string `json:"addr"`
	// Load is the gateway's current load (connected sessions, say).
	Load int `json:"load"`
}

// Registration is a gateway's ephemeral node <root>/gateways/<id>. It lasts
// while the process's session does; after a session is lost the node is
// created again in the next one, with the latest info, until Close.
type Registration struct {
	z      *ZooKeeper
	id     string
	node   string
	cancel context.CancelFunc
	done   chan struct{} // closed when maintain returned
	once   sync.Once

	mu      sync.Mutex // serializes writes of the node; guards the fields below
	info    GatewayInfo
	sess    *session // session holding the node; nil while not registered
	czxid   int64    // creation zxid of the node this registration holds
	version int32    // data version of that node
}

// RegisterGateway creates the ephemeral node <root>/gateways/<id> holding
// info as JSON, and keeps it registered (in every new session) until the
// Registration or z is closed. ctx bounds only this first registration. If
// another session holds the node (a previous process whose session has not
// expired yet, or a live gateway with the same id), RegisterGateway waits for
// it to go, until ctx ends. One ZooKeeper registers an id at most once at a
// time.
func (z *ZooKeeper) RegisterGateway(ctx context.Context, id string, info GatewayInfo) (*Registration, error) {
	if err := validSegment("gateway id", id); err != nil {
		return nil, err
	}
	if err := z.begin(); err != nil {
		return nil, err
	}
	z.mu.Lock()
	dup := z.gateways[id]
	z.gateways[id] = true
	z.mu.Unlock()
	if dup {
		z.end()
		return nil, fmt.Errorf("coord: gateway %q is already registered by this process", id)
	}
	info.ID = id
	r := &Registration{z: z, id: id, node: z.path("gateways", id), info: info, done: make(chan struct{})}
	rctx, cancel := z.scope(context.Background())
	r.cancel = cancel
	fail := func(err error) (*Registration, error) {
		cancel()
		z.mu.Lock()
		delete(z.gateways, id)
		z.mu.Unlock()
		z.end()
		return nil, err
	}
	ctx, cancelFirst := z.scope(ctx)
	defer cancelFirst()
	if err := z.ensurePath(ctx, z.path("gateways")); err != nil {
		return fail(err)
	}
	s, err := r.register(ctx)
	if err != nil {
		return fail(err)
	}
	go r.maintain(rctx, s)
	return r, nil
}

// register creates the node in the current session and returns the session.
func (r *Registration) register(ctx context.Context) (*session, error) {
	var out *session
	err := r.z.retry(ctx, "register gateway "+r.id, func(s *session) error {
		sctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		defer context.AfterFunc(s.ctx, func() { cancel(errSessionChanged) })()
		if err := r.publish(sctx, s); err != nil {
			if ctx.Err() == nil && s.ctx.Err() != nil {
				return errSessionChanged
			}
			return err
		}
		out = s
		return nil
	})
	return out, err
}

// publish creates the node in session s, or adopts the one a request of s
// created, waiting while another session holds it.
func (r *Registration) publish(ctx context.Context, s *session) error {
	z := r.z
	warned := false
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		ours, err := r.tryPublish(s)
		if ours || err != nil {
			return err
		}
		if !warned {
			warned = true
			z.log.Warn("coord: gateway id held by another session; waiting for it to go", "gateway", r.id)
		}
		ok, _, ch, err := z.conn.ExistsW(r.node)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// tryPublish creates or adopts the node in session s; it reports false,
// with no error, when another session holds it.
func (r *Registration) tryPublish(s *session) (bool, error) {
	z := r.z
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := json.Marshal(r.info)
	if err != nil {
		return false, err
	}
	_, err = z.conn.Create(r.node, data, zk.FlagEphemeral, z.acl)
	if err != nil && !errors.Is(err, zk.ErrNodeExists) && !transient(err) {
		return false, fmt.Errorf("coord: creating %s: %w", r.node, err)
	}
	got, st, err := z.conn.Get(r.node)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return false, errSessionChanged // retried
	case err != nil:
		return false, err
	case st.EphemeralOwner != s.id:
		return false, nil
	}
	if !bytes.Equal(got, data) {
		if st, err = z.conn.Set(r.node, data, st.Version); err != nil {
			return false, err
		}
	}
	r.sess, r.czxid, r.version = s, st.Czxid, st.Version
	return true, nil
}

// maintain registers the gateway again in every new session until ctx ends.
func (r *Registration) maintain(ctx context.Context, s *session) {
	defer r.z.end()
	defer close(r.done)
	for {
		select {
		case <-s.ctx.Done():
		case <-ctx.Done():
			return
		}
		r.mu.Lock()
		r.sess = nil
		r.mu.Unlock()
		var err error
		if s, err = r.register(ctx); err != nil {
			return // ctx ended
		}
		r.z.log.Info("coord: gateway registered in a new session", "gateway", r.id, "session", sessionHex(s.id))
	}
}

// Update publishes a new load. While the gateway is not registered (between
// sessions) it only records it for the next registration and returns nil.
// An error means the node could not be written; the next Update or
// registration writes the latest info.
func (r *Registration) Update(load int) error {
	z := r.z
	r.mu.Lock()
	defer r.mu.Unlock()
	r.info.Load = load
	data, err := json.Marshal(r.info)
	if err != nil {
		return err
	}
	for range 3 {
		if !r.sess.live() || z.conn.SessionID() != r.sess.id {
			return nil
		}
		st, err := z.conn.Set(r.node, data, r.version)
		switch {
		case err == nil:
			r.version = st.Version
			return nil
		case errors.Is(err, zk.ErrBadVersion), transient(err):
			// An earlier write whose answer was lost may have gone through:
			// read the version again if the node is still this one.
			_, st, gerr := z.conn.Get(r.node)
			if gerr != nil || st.EphemeralOwner != r.sess.id || st.Czxid != r.czxid {
				return fmt.Errorf("coord: updating gateway %s: %w", r.id, err)
			}
			r.version = st.Version
		default:
			return fmt.Errorf("coord: updating gateway %s: %w", r.id, err)
		}
	}
	return fmt.Errorf("coord: updating gateway %s: concurrent writes", r.id)
}

// Close deregisters the gateway: it stops re-registering and deletes the
// node, waiting until it is deleted or the session is lost. Close is
// idempotent.
func (r *Registration) Close() {
	r.once.Do(func() {
		z := r.z
		r.cancel()
		<-r.done
		r.mu.Lock()
		s, czxid := r.sess, r.czxid
		r.sess = nil
		r.mu.Unlock()
		if s.live() {
			node := r.node
			c := z.jan.add(&cleanup{sid: s.id, what: "deregister " + node, run: func(c *zk.Conn) error {
				st, err := ownNode(c, node, func(st *zk.Stat) bool { return st.EphemeralOwner == s.id && st.Czxid == czxid })
				if st == nil {
					return err
				}
				if err := c.Delete(node, st.Version); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
					return err
				}
				return nil
			}})
			select {
			case <-c.done:
			case <-s.ctx.Done():
			}
		}
		z.mu.Lock()
		delete(z.gateways, r.id)
		z.mu.Unlock()
	})
}

// Gateways lists the registered gateways, sorted by id. A node that is not
// valid JSON is skipped and logged.
func (z *ZooKeeper) Gateways(ctx context.Context) ([]GatewayInfo, error) {
	if err := z.begin(); err != nil {
		return nil, err
	}
	defer z.end()
	ctx, cancel := z.scope(ctx)
	defer cancel()
	dir := z.path("gateways")
	var out []GatewayInfo
	err := z.retry(ctx, "list gateways", func(*session) error {
		out = nil
		ids, _, err := z.conn.Children(dir)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		slices.Sort(ids)
		for _, id := range ids {
			data, _, err := z.conn.Get(dir + "/" + id)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				return err
			}
			var gi GatewayInfo
			if err := json.Unmarshal(data, &gi); err != nil {
				z.log.Warn("coord: skipping a gateway node that is not JSON", "gateway", id, "err", err)
				continue
			}
			gi.ID = id
			out = append(out, gi)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("coord: listing gateways: %w", err)
	}
	return out, nil
}
