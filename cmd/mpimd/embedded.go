package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/alicebob/miniredis/v2"
	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	gmssql "github.com/dolthub/go-mysql-server/sql"
	"github.com/sirupsen/logrus"
)

// embeddedDatabase is the database the embedded MySQL stand-in serves.
const embeddedDatabase = "mpim"

// Embedded is the value of --redis-addr and --mysql that asks for the
// in-process stand-ins; it is also their default, so `mpimd all` with no
// configuration runs on nothing but itself.
const Embedded = "embedded"

// embedded reports whether the configuration asks for any in-process
// stand-in.
func (c *Config) embedded() (redis, mysql bool) {
	return c.RedisAddr == Embedded, c.MySQL == Embedded && c.needsMySQL()
}

// startEmbedded starts the in-process stand-ins the configuration asks for —
// miniredis for Redis, go-mysql-server's in-memory engine for MySQL, both on
// loopback ports so the process reaches them through the same drivers, Lua
// scripts and SQL as real servers — and points the configuration at them.
// Each requires credentials drawn at random for this process (only the
// configuration holds them; they are neither printed nor logged), so
// another local process that finds the port can neither read the login
// tokens nor write them. It warns loudly that nothing survives the
// process. The returned function stops them.
func (c *Config) startEmbedded(stderr io.Writer, lg *slog.Logger) (func(), error) {
	wantRedis, wantMySQL := c.embedded()
	if !wantRedis && !wantMySQL {
		return func() {}, nil
	}
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	var what []string
	if wantRedis {
		mr := miniredis.NewMiniRedis()
		password := rand.Text()
		mr.RequireAuth(password)
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return stop, fmt.Errorf("embedded redis: %w", err)
		}
		stops = append(stops, mr.Close)
		c.RedisAddr, c.RedisPassword = mr.Addr(), password
		what = append(what, "Redis (miniredis at "+c.RedisAddr+")")
	}
	if wantMySQL {
		user, password := "mpim", rand.Text()
		addr, close, err := startEmbeddedMySQL(user, password, lg)
		if err != nil {
			stop()
			return func() {}, err
		}
		stops = append(stops, close)
		c.MySQL = user + ":" + password + "@tcp(" + addr + ")/" + embeddedDatabase
		what = append(what, "MySQL (go-mysql-server in-memory at "+addr+")")
	}
	banner := strings.Repeat("!", 78)
	fmt.Fprintf(stderr, "%s\n!! mpimd: EMBEDDED MODE — DATA LIVES IN MEMORY ONLY AND IS LOST WHEN mpimd STOPS.\n"+
		"!! In-process stand-ins: %s.\n"+
		"!! For anything but trying mpim out, run on real servers: --redis-addr, --mysql, --zookeeper\n"+
		"!! (or scripts/run.sh, which installs and starts them). See docs/deployment.md.\n%s\n",
		banner, strings.Join(what, ", "), banner)
	lg.Warn("embedded mode: data lives in memory only", "stand-ins", strings.Join(what, ", "))
	return stop, nil
}

// startEmbeddedMySQL serves an empty in-memory database over the MySQL
// protocol on a loopback port to the one account user with password (no
// other account exists, root included).
func startEmbeddedMySQL(user, password string, lg *slog.Logger) (addr string, stop func(), err error) {
	logrus.SetLevel(logrus.ErrorLevel) // the engine's per-query chatter
	db := memory.NewDatabase(embeddedDatabase)
	db.EnablePrimaryKeyIndexes()
	pro := memory.NewDBProvider(db)
	engine := sqle.NewDefault(pro)
	users := engine.Analyzer.Catalog.MySQLDb
	ed := users.Editor()
	users.AddSuperUser(ed, user, "%", password) // also turns authentication on
	ed.Close()
	// The listener is ours so the port is known before the server runs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("embedded mysql: %w", err)
	}
	addr = ln.Addr().String()
	ln.Close()
	srv, err := server.NewServer(server.Config{Protocol: "tcp", Address: addr}, engine, gmssql.NewContext,
		memory.NewSessionBuilder(pro), nil)
	if err != nil {
		return "", nil, fmt.Errorf("embedded mysql: %w", err)
	}
	go func() {
		if err := srv.Start(); err != nil {
			lg.Error("embedded mysql stopped", "err", err)
		}
	}()
	return addr, func() { srv.Close() }, nil
}

// embeddedMaxConns is the connection limit of the pool on the embedded MySQL:
// its in-memory engine keeps each connection's uncommitted tables apart and
// copies them back on commit, so concurrent writers would overwrite each
// other; one connection serialises every statement and transaction.
const embeddedMaxConns = 1
