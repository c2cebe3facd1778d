package testsvc

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlDBPrefix starts the name of every database MySQL creates:
// mpimt_<unix seconds, base 36>_<random>.
const mysqlDBPrefix = "mpimt_"

// staleAfter is the age past which a leftover test database (from a test
// binary that was killed before its cleanup ran) is dropped.
const staleAfter = 6 * time.Hour

var sweepOnce sync.Once

// MySQL creates a fresh, empty database for tb on the server named by
// MPIM_TEST_MYSQL (a go-sql-driver/mysql DSN, default
// "root@tcp(127.0.0.1:3306)/"; its database name, if any, is ignored) and
// returns a DSN for it with parseTime=true and multiStatements=false. The
// database (utf8mb4) is named mpimt_<time>_<random> and is dropped in
// tb.Cleanup. The first call in a process also drops mpimt_ databases older
// than six hours that killed test runs left behind.
//
// If the server cannot be reached or refuses to create the database, MySQL
// fails tb with tb.Fatalf; it never skips.
func MySQL(tb testing.TB) (dsn string) {
	tb.Helper()
	base := env("MPIM_TEST_MYSQL", "root@tcp(127.0.0.1:3306)/")
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		tb.Fatalf("testsvc: MPIM_TEST_MYSQL=%q is not a valid DSN: %v", base, err)
	}
	cfg.DBName = ""
	if cfg.Timeout == 0 {
		cfg.Timeout = dialTimeout
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		tb.Fatalf("testsvc: MPIM_TEST_MYSQL=%q: %v", base, err)
	}
	admin := sql.OpenDB(connector)
	ctx, cancel := context.WithTimeout(context.Background(), 2*dialTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		tb.Fatalf("testsvc: MySQL at %s (MPIM_TEST_MYSQL) does not answer: %v\n\t%s", cfg.Addr, err, hint)
	}

	sweepOnce.Do(func() { sweepStale(ctx, tb, admin) })

	name := mysqlDBPrefix + strconv.FormatInt(time.Now().Unix(), 36) + "_" + randomID(10)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		admin.Close()
		tb.Fatalf("testsvc: creating database %s on %s: %v", name, cfg.Addr, err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			tb.Errorf("testsvc: dropping database %s: %v", name, err)
		}
	})

	out := cfg.Clone()
	out.DBName = name
	out.ParseTime = true
	out.MultiStatements = false
	return out.FormatDSN()
}

// sweepStale drops test databases whose creation time, encoded in their name,
// is older than staleAfter. Failures are only logged: they cost disk space,
// not correctness.
func sweepStale(ctx context.Context, tb testing.TB, admin *sql.DB) {
	rows, err := admin.QueryContext(ctx,
		"SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'mpimt\\_%'")
	if err != nil {
		tb.Logf("testsvc: listing stale test databases: %v", err)
		return
	}
	var stale []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			break
		}
		ts, _, ok := strings.Cut(strings.TrimPrefix(name, mysqlDBPrefix), "_")
		if !ok {
			continue
		}
		sec, err := strconv.ParseInt(ts, 36, 64)
		if err == nil && time.Since(time.Unix(sec, 0)) > staleAfter {
			stale = append(stale, name)
		}
	}
	rows.Close()
	for _, name := range stale {
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS `%s`", name)); err != nil {
			tb.Logf("testsvc: dropping stale test database %s: %v", name, err)
		}
	}
}
