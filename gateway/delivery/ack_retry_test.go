package delivery_test

import (
	"context"
	"testing"
)

// An Ack whose cursor write failed has already taken its pushes out of
// flight; the client, told unavailable, acknowledges the same id again. That
// retry must store the cursor, not answer success with nothing stored (the
// device would then be pushed the entries again on its next attachment,
// after being told they were acknowledged). The failed write is simulated
// by putting the stored cursor back where it was before the first Ack.
func TestAckRetriedAfterALostCursorWriteStoresTheCursor(t *testing.T) {
	e := newEnv(t)
	a := e.hub(t, "gw-a", nil, nil)
	ctx := context.Background()
	u := newUser()
	s := newSink()
	d := a.attach(t, u, "d", s)
	ids := e.project(t, u, 4)
	s.waitFor(t, "pushes", func() bool { return len(s.firsts()) == 4 })
	if err := d.Ack(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	e.setCursor(t, u, "d", ids[0]) // the write of ids[2] was lost
	if err := d.Ack(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	if got := e.cursor(t, u, "d"); got != ids[2] {
		t.Fatalf("cursor %s after the retried ack of %s", got, ids[2])
	}
	// An older id stores nothing older; an id never pushed stores nothing.
	for _, id := range []string{ids[1], "99999999999999-0"} {
		if err := d.Ack(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.cursor(t, u, "d"); got != ids[2] {
		t.Fatalf("cursor %s, want %s", got, ids[2])
	}
}
