package testsvc_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/mpim/mpim/internal/testsvc"
)

// FreeAddr hands out distinct loopback ports, each free, below the
// kernel's ephemeral range (where outgoing connections cannot take them).
func TestFreeAddrIsDistinctFreeAndBelowTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	low, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 100 {
		addr := testsvc.FreeAddr(t)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("FreeAddr = %q (%v), want a loopback address", addr, err)
		}
		if p, _ := strconv.Atoi(port); low > 10000 && (p >= low || p < 10000) {
			t.Errorf("port %d is not between 10000 and the ephemeral range's start %d", p, low)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		ln.Close()
	}
}
