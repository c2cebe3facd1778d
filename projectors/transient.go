package projectors

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/mpim/mpim/domain"
	"github.com/redis/go-redis/v9"
)

// Transient reports whether err is a failure of the infrastructure rather
// than of the batch: a lost or refused connection, a timeout, a MySQL
// deadlock (1213) or lock wait timeout (1205), a Redis server that is
// loading, busy with a script, read-only or failing over, and any error a
// package classed domain.EUnavailable (writes not yet on the replicas a
// WAIT asked for, say: a failover in progress). The runner retries
// transient errors without bound; any other error that repeats on the same
// batch is taken to be the batch's (a data error, a constraint violation, a
// bug) and leads to quarantine (see Quarantiner).
//
// A projector can mark its own errors transient by wrapping an error whose
// Transient method returns true.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var tr interface{ Transient() bool }
	if errors.As(err, &tr) && tr.Transient() {
		return true
	}
	if domain.ErrorCode(err) == domain.EUnavailable {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true // a dial, read or write on the network failed, or timed out
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1205, 1213, // lock wait timeout, deadlock
			1040, 1053, 1077, 1152, 1153, 1159, 1160, 1161, // too many connections, shutdown, aborted or broken packets
			1317, 1927, 2002, 2003, 2006, 2013, // query interrupted, connection killed, server gone
			3024, 1969, 4031: // statement time limits, client idle timeout
			return true
		}
		return false
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, prefix := range redisTransient {
			if strings.HasPrefix(re.Error(), prefix) {
				return true
			}
		}
	}
	return false
}

// redisTransient are the prefixes of Redis error replies that come from the
// server's state, not from the command.
var redisTransient = []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOREPLICAS", "MOVED", "ASK", "NOSCRIPT", "OOM"}
