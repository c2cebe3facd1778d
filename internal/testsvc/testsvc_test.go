package testsvc

import (
	"database/sql"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestRedis(t *testing.T) {
	a, b := Redis(t), Redis(t)
	if a.Prefix == b.Prefix {
		t.Fatalf("two calls returned the same prefix %q", a.Prefix)
	}
	if !strings.HasPrefix(a.Prefix, "t:") || !strings.HasSuffix(a.Prefix, ":") {
		t.Fatalf("prefix %q, want t:<random>:", a.Prefix)
	}

	t.Run("cleanup deletes the prefix's keys only", func(t *testing.T) {
		var prefix string
		t.Run("inner", func(t *testing.T) {
			rt := Redis(t)
			prefix = rt.Prefix
			c, err := dialRESP(rt.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := range 3 {
				if _, err := c.do("SET", fmt.Sprintf("%sk%d", rt.Prefix, i), "v"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.do("SET", a.Prefix+"keep", "v"); err != nil {
				t.Fatal(err)
			}
		})
		c, err := dialRESP(a.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, k := range []string{prefix + "k0", prefix + "k1", prefix + "k2", a.Prefix + "keep"} {
			n, err := c.do("EXISTS", k)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			if strings.HasPrefix(k, a.Prefix) {
				want = 1
			}
			if n != want {
				t.Errorf("EXISTS %s = %v, want %d", k, n, want)
			}
		}
	})
}

func TestMySQL(t *testing.T) {
	var name string
	t.Run("fresh database", func(t *testing.T) {
		dsn := MySQL(t)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.ParseTime || cfg.MultiStatements {
			t.Errorf("DSN %q: parseTime=%v multiStatements=%v, want true, false", dsn, cfg.ParseTime, cfg.MultiStatements)
		}
		name = cfg.DBName
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var cur string
		var tables int
		if err := db.QueryRow("SELECT DATABASE(), (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE())").Scan(&cur, &tables); err != nil {
			t.Fatal(err)
		}
		if cur != name || tables != 0 {
			t.Errorf("connected to %q with %d tables, want %q and 0", cur, tables, name)
		}
		if _, err := db.Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("dropped after the test", func(t *testing.T) {
		dsn := MySQL(t) // another fresh database, to look from
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s still exists after its test ended", name)
		}
	})
}

func TestZooKeeper(t *testing.T) {
	servers, root := ZooKeeper(t)
	_, root2 := ZooKeeper(t)
	if len(servers) == 0 || root == root2 || !strings.HasPrefix(root, "/mpimt/") {
		t.Fatalf("servers %v roots %q %q: want servers and two distinct /mpimt/ roots", servers, root, root2)
	}
}

// fatalTB records how a helper ends a test. Fatalf and Skip* end the calling
// goroutine, like the real ones.
type fatalTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped bool
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fatalTB) Skip(...any)          { f.skip() }
func (f *fatalTB) Skipf(string, ...any) { f.skip() }
func (f *fatalTB) SkipNow()             { f.skip() }
func (f *fatalTB) skip() {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}

func TestUnreachableServerFailsTheTest(t *testing.T) {
	addr := FreeAddr(t)
	cases := []struct {
		name, env, value string
		call             func(testing.TB)
	}{
		{"redis", "MPIM_TEST_REDIS", addr, func(tb testing.TB) { Redis(tb) }},
		{"mysql", "MPIM_TEST_MYSQL", "root@tcp(" + addr + ")/", func(tb testing.TB) { MySQL(tb) }},
		{"zookeeper", "MPIM_TEST_ZK", addr, func(tb testing.TB) { ZooKeeper(tb) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			f := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.call(f)
			}()
			<-done
			if f.skipped {
				t.Fatal("helper skipped the test; it must fail it")
			}
			if !strings.Contains(f.fatal, "scripts/services.sh") || !strings.Contains(f.fatal, addr) {
				t.Fatalf("Fatalf message %q, want the address and the services.sh hint", f.fatal)
			}
		})
	}
}
