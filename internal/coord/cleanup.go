package coord

import (
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// cleanup is the removal of an ephemeral node: an ownership released after
// work returned, a member leaving, a gateway deregistered.
type cleanup struct {
	// sid is the session that holds the node; 0 means the node's path is
	// unique to this process (a member node), so removing it is safe in
	// any session and the cleanup is never dropped before Close.
	sid  int64
	what string
	// run performs the removal, and returns nil when the node is gone or
	// was not this process's; a transient error is retried.
	run  func(*zk.Conn) error
	done chan struct{} // closed when the node is removed or left to the session's end
}

// janitor performs cleanups one at a time, in the order they were queued,
// so that ownerships are released before their member leaves. A cleanup is
// retried across disconnections for as long as its session lasts (the
// session may resume after being presumed lost, and then its nodes must
// still go); it is dropped when the session ended, which removed the node.
// Running them apart from the work goroutines lets Run return and the next
// session start while the connection is down.
type janitor struct {
	mu      sync.Mutex
	queue   []*cleanup
	stopped bool
	wakeCh  chan struct{} // a cleanup was queued or the session state changed
	quit    chan struct{}
	done    chan struct{}
}

func (j *janitor) init() {
	j.wakeCh = make(chan struct{}, 1)
	j.quit = make(chan struct{})
	j.done = make(chan struct{})
}

// add queues c and returns it. After stop, c is dropped at once.
func (j *janitor) add(c *cleanup) *cleanup {
	c.done = make(chan struct{})
	j.mu.Lock()
	if j.stopped {
		j.mu.Unlock()
		close(c.done)
		return c
	}
	j.queue = append(j.queue, c)
	j.mu.Unlock()
	j.wake()
	return c
}

func (j *janitor) wake() {
	select {
	case j.wakeCh <- struct{}{}:
	default:
	}
}

// stop makes run return; cleanups still queued are dropped (closing the
// connection ends the session, which removes their nodes).
func (j *janitor) stop() {
	j.mu.Lock()
	j.stopped = true
	j.mu.Unlock()
	close(j.quit)
}

// wait waits for run to return after stop.
func (j *janitor) wait() { <-j.done }

func (j *janitor) run(z *ZooKeeper) {
	defer close(j.done)
	defer j.drop()
	for {
		j.mu.Lock()
		var c *cleanup
		if len(j.queue) > 0 {
			c = j.queue[0]
		}
		j.mu.Unlock()
		if c == nil {
			select {
			case <-j.wakeCh:
				continue
			case <-j.quit:
				return
			}
		}
		if !j.perform(z, c) {
			return
		}
		j.mu.Lock()
		j.queue = j.queue[1:]
		j.mu.Unlock()
		close(c.done)
	}
}

// perform runs c until it succeeds, fails for good, or its session ends; it
// returns false if the janitor was stopped.
func (j *janitor) perform(z *ZooKeeper, c *cleanup) bool {
	for {
		if c.sid != 0 && z.conn.SessionID() != c.sid {
			return true // the session ended and took its ephemeral nodes with it
		}
		// Nothing is sent while the client has no connection (it would
		// be queued and sent first on the next one) or has just made one.
		wait := z.unsettled()
		if wait == 0 {
			err := c.run(z.conn)
			if err == nil {
				return true
			}
			if !transient(err) {
				z.log.Warn("coord: cleanup failed", "what", c.what, "err", err)
				return true
			}
			wait = minBackoff
		}
		t := time.NewTimer(wait)
		select {
		case <-j.wakeCh:
		case <-t.C:
		case <-j.quit:
			t.Stop()
			return false
		}
		t.Stop()
	}
}

// drop marks every queued cleanup done.
func (j *janitor) drop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range j.queue {
		close(c.done)
	}
	j.queue = nil
}
