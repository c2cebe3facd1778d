package gateway

import (
	"net"
	"sync"

	"github.com/mpim/mpim/internal/clientaddr"
)

// LimitListener returns a listener that accepts at most perAddr open
// connections from one client address (IPv4 address, or IPv6 /64) and
// closes the ones over it at once; refused, if not nil, is called for each.
// perAddr < 0 means no limit (ln itself is returned). The count of a
// connection ends when it is closed, hijacked connections included. It is
// safe for concurrent use.
func LimitListener(ln net.Listener, perAddr int, refused func()) net.Listener {
	if perAddr < 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: perAddr, refused: refused, open: make(map[string]int)}
}

type limitListener struct {
	net.Listener
	max     int
	refused func()

	mu   sync.Mutex // guards open
	open map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientaddr.Key(c.RemoteAddr().String())
		l.mu.Lock()
		ok := l.open[key] < l.max
		if ok {
			l.open[key]++
		}
		l.mu.Unlock()
		if ok {
			return &limitConn{Conn: c, l: l, key: key}, nil
		}
		c.Close()
		if l.refused != nil {
			l.refused()
		}
	}
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// limitConn gives its place back when first closed.
type limitConn struct {
	net.Conn
	l    *limitListener
	key  string
	once sync.Once
}

func (c *limitConn) Close() error {
	c.once.Do(func() { c.l.release(c.key) })
	return c.Conn.Close()
}
