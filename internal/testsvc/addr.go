package testsvc

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address whose port was free a moment ago, for
// a server the test starts itself. Another process may take the port before
// the test binds it; tests live with that rare race.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
