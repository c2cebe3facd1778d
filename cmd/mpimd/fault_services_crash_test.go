package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/connect"
)

// What the crash tests of fault_services_test.go need beyond the servers:
// a way to make a MariaDB kill land in the middle of a read-model
// transaction (the audits are in readmodel_audit_test.go).

// blockReadModelBatch makes the next read-model batch stop in the middle of
// its transaction, so that a kill of the server interrupts it: it locks
// every row and gap of user_conversations (which only the read-model
// projector writes, after a batch's conversations and messages rows) in a
// transaction of its own, waits until another transaction that has
// already modified rows waits for that lock, and then until the redo log on
// disk holds those modifications. The lock is held until the server is
// killed (or the test ends).
func blockReadModelBatch(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	db, err := connect.MySQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		holder.Close()
		db.Close()
	})
	var self int64
	var rows int
	err = holder.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&self)
	if err == nil {
		_, err = holder.ExecContext(ctx, "BEGIN")
	}
	if err == nil {
		err = holder.QueryRowContext(ctx, "SELECT COUNT(*) FROM user_conversations FOR UPDATE").Scan(&rows)
	}
	if err != nil {
		t.Fatalf("locking user_conversations: %v", err)
	}
	// InnoDB refreshes what information_schema.innodb_trx shows only when
	// it was last read over 100 ms before (CACHE_MIN_IDLE_TIME_US): polled
	// faster, it shows the same snapshot forever.
	waitUntil(t, "a read-model transaction that wrote rows to wait for the lock on user_conversations", func() bool {
		time.Sleep(150 * time.Millisecond)
		var n int
		err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.innodb_trx "+
			"WHERE trx_state = 'LOCK WAIT' AND trx_rows_modified > 0 AND trx_mysql_thread_id <> ?", self).Scan(&n)
		return err == nil && n > 0
	})
	// The blocked transaction's changes are in InnoDB's log buffer; with
	// innodb_flush_log_at_trx_commit=1 the next commit (or the flush every
	// second) writes them to the redo log. Once they are there, recovery
	// must find the transaction and roll it back, which its log says; before,
	// a kill just loses them unseen.
	lsn := func(name string) uint64 {
		var v uint64
		var ignored string
		if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE ?", name).Scan(&ignored, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	written := lsn("Innodb_lsn_current")
	waitUntil(t, "the redo log flushed past the blocked transaction's changes", func() bool {
		return lsn("Innodb_lsn_flushed") >= written
	})
}

// loggedCount returns how many times s occurs in the log of p.
func loggedCount(t *testing.T, p *mpimdProc, s string) int {
	t.Helper()
	out, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(out, []byte(s))
}
