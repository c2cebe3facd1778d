package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"

	"github.com/mpim/mpim/internal/corknet"
)

// corkingWriter is the ResponseWriter handed to websocket.Accept: its
// Hijack wraps the connection in a corknet.Conn, which it keeps. The
// session's writer corks it around a batch of queued frames, so a burst of
// pushes to one client costs one system call instead of one per frame.
type corkingWriter struct {
	http.ResponseWriter
	conn *corknet.Conn
}

func (w *corkingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: the ResponseWriter cannot be hijacked")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = corknet.New(nc, 0)
	// The library writes through brw.Writer, which it points at the
	// returned connection; reads go on through brw.Reader.
	brw.Writer.Reset(w.conn)
	return w.conn, brw, nil
}

// Unwrap gives http.ResponseController the original writer.
func (w *corkingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
