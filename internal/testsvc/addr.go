package testsvc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// FreeAddr returns a loopback address whose port was free a moment ago, for
// a server the test starts itself (often in another process, so the port
// cannot be handed over bound).
//
// The port is taken below the kernel's ephemeral range: a port from
// "127.0.0.1:0" is an ephemeral one, which any outgoing connection of the
// many processes a test runs (to Redis, MariaDB, ZooKeeper) can take
// before the server binds it; CI saw "address already in use" that way.
// Below the range only another listener can take it: this process hands
// each port out once, from a random start, locked against the other test
// processes running at once (reservePort), and checks that it is free.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := freeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// freeAddr is FreeAddr for callers without a test.
func freeAddr() (string, error) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	for range ports.size {
		port := ports.low + ports.next%ports.size
		ports.next++
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if !reservePort(port) {
			continue
		}
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr, nil
		}
	}
	// No range (a kernel whose ephemeral range starts low): any free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ports is the range FreeAddr hands out: up to 10,000 ports ending below
// the ephemeral range, and the next offset into it.
var ports struct {
	mu        sync.Mutex
	low, size int
	next      int
	held      []*os.File // reservePort's locks
}

func init() {
	ephemeralLow := 32768 // Linux's default when the range cannot be read
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeralLow = n
			}
		}
	}
	// Stay above the well-known and registered service ports tests use
	// (Redis 6379, MariaDB 3306, ZooKeeper 2181, ...).
	const floor = 10000
	ports.size = min(10000, ephemeralLow-floor)
	if ports.size <= 0 {
		ports.size = 0
		return
	}
	ports.low = ephemeralLow - ports.size
	ports.next = rand.IntN(ports.size)
}

// portLocks is the directory of the ports' lock files (reservePort).
var portLocks = filepath.Join(os.TempDir(), "mpim-test-ports")

// reservePort takes an exclusive lock on port's file, held until this
// process exits, so that test processes running at once never hand out
// the same port: a port one of them checked and handed to a server that
// binds it later (or that it restarts on it after a kill) is not free to
// the others' check meanwhile. Without the lock directory every port is
// free to take, as before.
func reservePort(port int) bool {
	if err := os.MkdirAll(portLocks, 0o777); err != nil {
		return true
	}
	f, err := os.OpenFile(filepath.Join(portLocks, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false // another test process holds it
	}
	ports.held = append(ports.held, f) // the lock lasts as long as the file stays open
	return true
}
