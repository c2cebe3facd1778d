package schema

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/go-sql-driver/mysql"

	"github.com/mpim/mpim/internal/testsvc"
)

// openDB opens a fresh, empty database for the test.
func openDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := sql.Open("mysql", testsvc.MySQL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// migratedDB is openDB with every migration applied.
func migratedDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db := openDB(tb)
	if _, err := Migrate(context.Background(), db); err != nil {
		tb.Fatal(err)
	}
	return db
}

func migrationNames(tb testing.TB) []string {
	tb.Helper()
	ms, err := Migrations()
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}

func tablesIn(tb testing.TB, db *sql.DB) []string {
	tb.Helper()
	rows, err := db.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			tb.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func recorded(tb testing.TB, db *sql.DB) map[uint64]string {
	tb.Helper()
	rows, err := db.Query("SELECT version, name FROM schema_migrations")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var v uint64
		var n string
		if err := rows.Scan(&v, &n); err != nil {
			tb.Fatal(err)
		}
		out[v] = n
	}
	return out
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	all := migrationNames(t)

	t.Run("fresh database gets every table", func(t *testing.T) {
		db := openDB(t)
		applied, err := Migrate(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(applied, all) {
			t.Errorf("applied %v, want %v", applied, all)
		}
		want := Tables()
		slices.Sort(want)
		if got := tablesIn(t, db); !slices.Equal(got, want) {
			t.Errorf("tables %v, want %v", got, want)
		}
		if got := len(recorded(t, db)); got != len(all) {
			t.Errorf("schema_migrations has %d rows, want %d", got, len(all))
		}
	})

	t.Run("second run applies nothing", func(t *testing.T) {
		db := migratedDB(t)
		applied, err := Migrate(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 0 {
			t.Errorf("second run applied %v, want nothing", applied)
		}
	})

	t.Run("concurrent runs apply each migration once", func(t *testing.T) {
		dsn := testsvc.MySQL(t)
		const n = 8
		var wg sync.WaitGroup
		results := make([][]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				// One pool per goroutine, like separate processes.
				db, err := sql.Open("mysql", dsn)
				if err != nil {
					errs[i] = err
					return
				}
				defer db.Close()
				results[i], errs[i] = Migrate(ctx, db)
			})
		}
		wg.Wait()
		count := map[string]int{}
		for i := range n {
			if errs[i] != nil {
				t.Errorf("migrator %d: %v", i, errs[i])
			}
			for _, name := range results[i] {
				count[name]++
			}
		}
		for _, name := range all {
			if count[name] != 1 {
				t.Errorf("%s applied %d times, want once", name, count[name])
			}
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if got := len(recorded(t, db)); got != len(all) {
			t.Errorf("schema_migrations has %d rows, want %d", got, len(all))
		}
	})

	t.Run("changed migration is an error", func(t *testing.T) {
		db := migratedDB(t)
		if _, err := db.Exec("UPDATE schema_migrations SET checksum = REPEAT('0', 64) WHERE version = 1"); err != nil {
			t.Fatal(err)
		}
		applied, err := Migrate(ctx, db)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("Migrate after tampering: err %v, want ErrChecksum", err)
		}
		if len(applied) != 0 {
			t.Errorf("applied %v despite the error", applied)
		}
	})

	t.Run("superseded checksum is accepted", func(t *testing.T) {
		db := migratedDB(t)
		if _, err := db.Exec("UPDATE schema_migrations SET checksum = ? WHERE version = 2", superseded["0002_read_model_swap"][0]); err != nil {
			t.Fatal(err)
		}
		if applied, err := Migrate(ctx, db); err != nil || len(applied) != 0 {
			t.Fatalf("Migrate over the earlier text of 0002: applied %v, err %v", applied, err)
		}
	})

	t.Run("half-applied file is re-run", func(t *testing.T) {
		// 0002 and later files add columns; a crash before their records
		// leaves them in place, and the re-run must count them as added.
		db := migratedDB(t)
		if _, err := db.Exec("DELETE FROM schema_migrations WHERE version >= 2"); err != nil {
			t.Fatal(err)
		}
		ms, err := Migrations()
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range ms[1:] {
			want = append(want, m.Name)
		}
		applied, err := Migrate(ctx, db)
		if err != nil || !slices.Equal(applied, want) {
			t.Fatalf("re-running 0002 on: applied %v, err %v, want %v", applied, err, want)
		}
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'conversations' AND column_name = 'version'").Scan(&n); err != nil || n != 1 {
			t.Fatalf("conversations.version columns: %d, %v", n, err)
		}
	})

	t.Run("lock is released", func(t *testing.T) {
		db := openDB(t)
		db.SetMaxOpenConns(1) // the migrator's connection goes back to the pool
		if _, err := Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		var dbName string
		if err := db.QueryRow("SELECT DATABASE()").Scan(&dbName); err != nil {
			t.Fatal(err)
		}
		var free int
		if err := db.QueryRow("SELECT IS_FREE_LOCK(?)", "mpim_schema."+dbName).Scan(&free); err != nil {
			t.Fatal(err)
		}
		if free != 1 {
			t.Error("migration lock still held after Migrate returned")
		}
	})
}

func TestMigrateNeedsADatabase(t *testing.T) {
	cfg, err := mysql.ParseDSN(testsvc.MySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = ""
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Migrate(context.Background(), db); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("err %v, want a no-database error", err)
	}
}

// TestTablesHoldTheirValues exercises the column types that matter for
// correctness: full 64-bit sequences and positions, numeric position order.
func TestTablesHoldTheirValues(t *testing.T) {
	db := migratedDB(t)
	const maxSeq = uint64(math.MaxUint64)
	if _, err := db.Exec(`INSERT INTO messages
		(conversation_id, seq, event_id, sender_id, kind, body, attachment, sent_at, version)
		VALUES ('d/A.B', ?, ?, 'u/A', 'image', '', '{"url":"https://x/y.png"}', UTC_TIMESTAMP(3), ?)`,
		maxSeq, make([]byte, 16), maxSeq); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	if err := db.QueryRow("SELECT seq FROM messages WHERE conversation_id = 'd/A.B'").Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if seq != maxSeq {
		t.Errorf("seq read back as %d, want %d", seq, maxSeq)
	}

	for i, pos := range [][2]uint64{{10, 0}, {9, 5}, {10, 2}, {9, 10}} {
		id := make([]byte, 16)
		id[15] = byte(i)
		if _, err := db.Exec(`INSERT INTO event_archive
			(partition_no, pos_ms, pos_seq, event_id, aggregate, version, event_type, occurred_at, payload)
			VALUES (3, ?, ?, ?, 'u/A', ?, 'UserRegistered', UTC_TIMESTAMP(3), x'00')`,
			pos[0], pos[1], id, i+1); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.Query("SELECT pos_ms, pos_seq FROM event_archive WHERE partition_no = 3 ORDER BY pos_ms, pos_seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][2]uint64
	for rows.Next() {
		var p [2]uint64
		if err := rows.Scan(&p[0], &p[1]); err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	want := [][2]uint64{{9, 5}, {9, 10}, {10, 0}, {10, 2}}
	if !slices.Equal(got, want) {
		t.Errorf("partition order %v, want %v", got, want)
	}

	if _, err := db.Exec(`INSERT INTO event_archive
		(partition_no, pos_ms, pos_seq, event_id, aggregate, version, event_type, occurred_at, payload)
		VALUES (4, 1, 1, ?, 'u/A', 1, 'UserRegistered', UTC_TIMESTAMP(3), x'00')`, make([]byte, 16)); err == nil {
		t.Error("a second event with the same (aggregate, version) and event id was archived")
	}
	if _, err := db.Exec(`INSERT INTO user_conversations (user_id, conversation_id, unread_count, updated_at)
		VALUES ('u/A', 'd/A.B', -1, UTC_TIMESTAMP(3))`); err == nil {
		t.Error("a negative unread_count was stored")
	}
}

func TestMigrationFiles(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations %v, want a first one with version 1", ms)
	}
	for _, m := range ms {
		stmts, err := m.Statements()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			// The naive splitter is right only if no statement still holds a
			// ';' and each begins like a statement.
			if strings.Contains(s, ";") {
				t.Errorf("%s: statement holds a ';': %.60s", m.Name, s)
			}
			if kw, _, _ := strings.Cut(s, " "); !slices.Contains([]string{"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE", "RENAME"}, kw) {
				t.Errorf("%s: statement starts with %q: %.60s", m.Name, kw, s)
			}
		}
	}
}

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string
		wantErr   bool
	}{
		{"statements end at a line-final semicolon", "-- c\nCREATE TABLE a (\n  x INT -- ok\n);\n\n-- d;\nDROP TABLE b ;  \n",
			[]string{"CREATE TABLE a (\n  x INT -- ok\n)", "DROP TABLE b"}, false},
		{"semicolon inside a line does not split", "INSERT INTO t VALUES ('a;b');\n", []string{"INSERT INTO t VALUES ('a;b')"}, false},
		{"unterminated statement is an error", "CREATE TABLE a (x INT);\nCREATE TABLE b (x INT)\n", nil, true},
		{"block comment is an error", "/* x */\nCREATE TABLE a (x INT);\n", nil, true},
		{"hash comment is an error", "# x\nCREATE TABLE a (x INT);\n", nil, true},
		{"empty statement is an error", "CREATE TABLE a (x INT);\n;\n", nil, true},
		{"no statements is an error", "-- nothing\n", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := splitStatements(c.src)
			if (err != nil) != c.wantErr {
				t.Fatalf("err %v, want error %v", err, c.wantErr)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestLoadMigrationsRejectsBadFiles(t *testing.T) {
	ok := &fstest.MapFile{Data: []byte("CREATE TABLE a (x INT);\n")}
	cases := map[string]fstest.MapFS{
		"malformed name":    {"m/1_init.sql": ok},
		"duplicate version": {"m/0001_a.sql": ok, "m/01_b.sql": ok, "m/0001_c.sql": ok},
		"unsplittable file": {"m/0001_a.sql": &fstest.MapFile{Data: []byte("CREATE TABLE a (x INT)")}},
	}
	for name, fsys := range cases {
		t.Run(name, func(t *testing.T) {
			if ms, err := loadMigrations(fsys, "m"); err == nil {
				t.Errorf("loaded %v, want an error", ms)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	ms := []Migration{{Version: 1, Name: "0001_a", Checksum: "a"}, {Version: 2, Name: "0002_b", Checksum: "b"}, {Version: 3, Name: "0003_c", Checksum: "c"}}
	cases := []struct {
		name    string
		done    map[uint64]record
		pending []uint64
		err     error
	}{
		{"fresh database: all pending", nil, []uint64{1, 2, 3}, nil},
		{"partly applied: the rest pending", map[uint64]record{1: {"0001_a", "a"}}, []uint64{2, 3}, nil},
		{"newer database: nothing pending", map[uint64]record{1: {"0001_a", "a"}, 2: {"0002_b", "b"}, 3: {"0003_c", "c"}, 4: {"0004_d", "d"}}, nil, nil},
		{"changed file: ErrChecksum", map[uint64]record{1: {"0001_a", "x"}}, nil, ErrChecksum},
		{"renamed file: ErrChecksum", map[uint64]record{1: {"0001_z", "a"}}, nil, ErrChecksum},
		{"gap before an applied one: ErrDiverged", map[uint64]record{1: {"0001_a", "a"}, 3: {"0003_c", "c"}}, nil, ErrDiverged},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pending, err := plan(ms, c.done)
			if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			var got []uint64
			for _, m := range pending {
				got = append(got, m.Version)
			}
			if !slices.Equal(got, c.pending) {
				t.Errorf("pending %v, want %v", got, c.pending)
			}
		})
	}
	t.Run("unknown applied version below the newest: ErrDiverged", func(t *testing.T) {
		_, err := plan([]Migration{ms[0], ms[2]}, map[uint64]record{1: {"0001_a", "a"}, 2: {"0002_b", "b"}})
		if !errors.Is(err, ErrDiverged) {
			t.Fatalf("err %v, want ErrDiverged", err)
		}
	})
}

func TestReadModelTablesAreTables(t *testing.T) {
	all := Tables()
	seen := map[string]bool{}
	for _, n := range all {
		if seen[n] {
			t.Errorf("table %s listed twice", n)
		}
		seen[n] = true
	}
	for _, n := range ReadModelTables() {
		if !seen[n] {
			t.Errorf("read-model table %s missing from Tables", n)
		}
	}
}
