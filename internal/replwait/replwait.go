// Package replwait holds a batch's checkpoint until its writes are on
// replicas: WAIT counts the replicas that have the writes of the connection
// it is sent on, and replication is in order, so a short-lived barrier key
// written on each master the batch wrote to, followed by WAIT on the same
// connection, proves every earlier write of that master is on them too.
// A projector that moves its checkpoint only after Wait loses no write
// below the checkpoint in a failover, whatever master the checkpoint is on.
package replwait

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// BarrierTTL is how long a barrier key lives: long enough for its WAIT,
// short enough that the keys of past batches do not pile up.
const BarrierTTL = 10 * time.Second

// Wait returns nil once n replicas of every master holding one of keys
// have that master's writes so far (at once when n <= 0 or keys is
// empty). It fails, naming the master and the count, when a WAIT counts
// fewer within timeout or a master cannot be reached. On one server keys
// only need to be non-empty.
//
// A resharding moves slots while a caller waits: a barrier in a slot that
// is moving (ASK, TRYAGAIN) or has moved (MOVED) says nothing about the
// master's other keys, so the whole Wait runs again, with the slot map
// learnt again, after a backoff (see maxMoving). The writes it confirms
// are on the slot's new master by then, and so on its replicas once its
// WAIT returns: a key's migration is a write on the new master.
func Wait(ctx context.Context, rdb redis.UniversalClient, keys []string, n int, timeout time.Duration) error {
	if n <= 0 || len(keys) == 0 {
		return nil
	}
	return whileMoving(ctx, rdb, func() error { return wait(ctx, rdb, keys, n, timeout) })
}

// A barrier whose slot is moving is tried again after tryFirst, doubling
// up to tryMax, at most maxMoving times (about 3 s in all): a resharding
// moves a slot's few keys in milliseconds.
const (
	maxMoving = 10
	tryFirst  = 10 * time.Millisecond
	tryMax    = 500 * time.Millisecond
)

// whileMoving runs f until it succeeds or fails with an error that is not
// a slot on the move (moving), at most maxMoving times more on a cluster,
// with the slot map learnt again before each.
func whileMoving(ctx context.Context, rdb redis.UniversalClient, f func() error) error {
	cc, _ := rdb.(*redis.ClusterClient)
	backoff := tryFirst
	for tries := 0; ; tries++ {
		err := f()
		if err == nil || cc == nil || tries >= maxMoving || !moving(err) {
			return err
		}
		cc.ReloadState(ctx)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		}
		backoff = min(2*backoff, tryMax)
	}
}

// moving reports whether err is a cluster's answer about a slot that is
// moving or has moved.
func moving(err error) bool {
	for _, p := range []string{"MOVED", "ASK", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// wait is one try of Wait.
func wait(ctx context.Context, rdb redis.UniversalClient, keys []string, n int, timeout time.Duration) error {
	barriers := map[redis.Cmdable]string{} // master -> a key it holds (one barrier each)
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		for _, k := range keys {
			node, err := cc.MasterForKey(ctx, k)
			if err != nil {
				return fmt.Errorf("master of %s: %w", k, err)
			}
			if _, ok := barriers[node]; !ok {
				barriers[node] = k
			}
		}
	} else {
		barriers[rdb] = keys[0]
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(barriers))
	for _, k := range barriers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- barrier(ctx, rdb, k, n, timeout)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// barrier writes the barrier key of k's slot on its master and WAITs
// there. A MOVED is an error here, not followed: k stands for every key of
// its master in Wait, and the others did not move with it (Wait runs
// again, grouping the keys by the map learnt again).
func barrier(ctx context.Context, rdb redis.UniversalClient, k string, n int, timeout time.Duration) error {
	bk, ok := BarrierKey(k)
	if !ok {
		return fmt.Errorf("no barrier key beside %q: it has braces but no hash tag", k)
	}
	got, err := onMaster(ctx, rdb, bk, "1", BarrierTTL, n, timeout, false)
	if err != nil {
		return fmt.Errorf("replication barrier beside %s: %w", k, err)
	}
	if got < int64(n) {
		return fmt.Errorf("the writes beside %s are on %d of %d replicas within %s", k, got, n, timeout)
	}
	return nil
}

// OnMaster sets key to value (with ttl; 0: none) on the master of key's
// slot (rdb itself on one server) and sends WAIT n timeout on the same
// connection, in one round trip; it returns WAIT's count.
//
// When the slot has moved to another master since the cluster client
// learnt its slot map (a resharding), the old master answers MOVED: the
// SET and WAIT then run once more on the master MOVED names, whose
// replicas have the slot's keys as they came over. While the slot is
// moving (ASK, TRYAGAIN) they are tried again as by Wait. Any other error
// is returned; on a cluster it makes the client reload its slot map.
func OnMaster(ctx context.Context, rdb redis.UniversalClient, key, value string, ttl time.Duration, n int, timeout time.Duration) (int64, error) {
	var got int64
	err := whileMoving(ctx, rdb, func() error {
		var err error
		got, err = onMaster(ctx, rdb, key, value, ttl, n, timeout, true)
		return err
	})
	return got, err
}

// onMaster is OnMaster, following a MOVED only with follow (else it
// reloads the slot map and returns the MOVED).
func onMaster(ctx context.Context, rdb redis.UniversalClient, key, value string, ttl time.Duration, n int, timeout time.Duration, follow bool) (int64, error) {
	cc, cluster := rdb.(*redis.ClusterClient)
	if !cluster {
		return setWait(ctx, rdb, key, value, ttl, n, timeout)
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("master of %s: %w", key, err)
	}
	got, err := setWait(ctx, node, key, value, ttl, n, timeout)
	if err == nil {
		return got, nil
	}
	cc.ReloadState(ctx) // the slot moved, or the master failed: learn the map again
	if !follow || !redis.HasErrorPrefix(err, "MOVED") {
		return 0, err
	}
	to, ferr := movedTo(ctx, cc, err)
	if ferr != nil {
		return 0, errors.Join(err, ferr)
	}
	return setWait(ctx, to, key, value, ttl, n, timeout)
}

// setWait runs SET and WAIT in one pipeline on node.
func setWait(ctx context.Context, node redis.Cmdable, key, value string, ttl time.Duration, n int, timeout time.Duration) (int64, error) {
	var set *redis.StatusCmd
	var wait *redis.Cmd
	_, err := node.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		set = pipe.Set(ctx, key, value, ttl)
		wait = pipe.Do(ctx, "WAIT", n, timeout.Milliseconds())
		return nil
	})
	if err != nil {
		return 0, cmp.Or(set.Err(), err)
	}
	return wait.Int64()
}

// movedTo returns the cluster client's client of the master a MOVED
// error names ("MOVED 3999 127.0.0.1:6381").
func movedTo(ctx context.Context, cc *redis.ClusterClient, moved error) (*redis.Client, error) {
	f := strings.Fields(moved.Error())
	if len(f) != 3 {
		return nil, fmt.Errorf("malformed redirect %q", moved)
	}
	node, err := MasterAt(ctx, cc, f[2])
	if err == nil && node == nil {
		err = fmt.Errorf("%s is not a known master", f[2])
	}
	return node, err
}

// MasterAt returns the cluster client's client of the master at addr, nil
// if the client knows no such master.
func MasterAt(ctx context.Context, cc *redis.ClusterClient, addr string) (*redis.Client, error) {
	var mu sync.Mutex
	var found *redis.Client
	err := cc.ForEachMaster(ctx, func(_ context.Context, node *redis.Client) error {
		if node.Options().Addr == addr {
			mu.Lock()
			found = node
			mu.Unlock()
		}
		return nil
	})
	return found, err
}

// BarrierKey returns a key in k's hash slot: k's own hash tag when it has
// one, else k itself as the tag. ok is false for a key with braces but no
// hash tag ("a{}b", "x}y"), which no key of this project is.
func BarrierKey(k string) (key string, ok bool) {
	if i := strings.IndexByte(k, '{'); i >= 0 {
		if j := strings.IndexByte(k[i+1:], '}'); j > 0 {
			return k + ":w", true
		}
	}
	if strings.ContainsAny(k, "{}") {
		return "", false
	}
	return "{" + k + "}:w", true
}
