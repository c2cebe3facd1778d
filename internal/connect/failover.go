package connect

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// slotMapRefresh makes a cluster client learn a failover as soon as it
// meets the failed master. go-redis reloads its slot map on MOVED and ASK
// replies and otherwise only every ClusterStateReloadInterval (a minute):
// after a master dies and its replica takes over, every command and
// pipeline for the master's slots would go on dialling the dead address
// until then, or until the address answers again. Added to every node
// client, it asks for a reload (go-redis runs one at a time, at most one
// every 200ms) whenever a node cannot be dialled or a connection to it
// fails; once the cluster has promoted the replica, the reload finds it.
type slotMapRefresh struct {
	cc atomic.Pointer[redis.ClusterClient]
}

func (h *slotMapRefresh) reloadOn(err error) {
	if err == nil || !connFailure(err) {
		return
	}
	if cc := h.cc.Load(); cc != nil {
		cc.ReloadState(context.Background())
	}
}

// connFailure reports whether err is a failure of the connection (dial,
// reset, timeout, closed), not a Redis error reply or a cancelled context.
func connFailure(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

func (h *slotMapRefresh) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		h.reloadOn(err)
		return conn, err
	}
}

func (h *slotMapRefresh) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.reloadOn(err)
		return err
	}
}

func (h *slotMapRefresh) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.reloadOn(err)
		return err
	}
}
