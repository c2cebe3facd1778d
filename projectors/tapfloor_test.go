package projectors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/prometheus/client_golang/prometheus"
)

// tapRead reads up to n entries of partition p for tap, acknowledging them
// unless ack is false.
func tapRead(t *testing.T, tap *eventstore.Tap, p int, n int64, ack bool) []eventstore.TapEntry {
	t.Helper()
	got, err := tap.Read(context.Background(), p, n, 10*time.Millisecond)
	if err != nil {
		t.Fatalf("tap read: %v", err)
	}
	if ack {
		var pos []eventstore.Position
		for _, e := range got {
			pos = append(pos, e.Position)
		}
		if err := tap.Ack(context.Background(), p, pos...); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// A tap group holds back the trim at its lowest pending entry; once its
// oldest needed entry is older than the retention it is cut loose: a marker
// with the range, a metric, an ERROR line, and a TapCutError on its next
// read until the loss is accepted; then it reads on from the stream's first
// entry.
func TestTapGroupHoldsBackTrimUntilCutLoose(t *testing.T) {
	ctx := context.Background()
	store, _, _ := openStore(t, 1)
	appendMessages(t, store, "d/t.a", 20)
	recs, err := store.ReadPartition(ctx, 0, eventstore.Position{}, 100)
	if err != nil || len(recs) != 20 {
		t.Fatalf("read %d, %v", len(recs), err)
	}
	tap, err := store.NewTap(ctx, eventstore.TapConfig{Group: "g", Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	tapRead(t, tap, 0, 5, true)
	tapRead(t, tap, 0, 3, false) // recs[5..7] pending
	proj := newMem()
	proj.pos[0] = recs[15].Position
	now := time.UnixMilli(int64(recs[5].Position.Ms)).Add(time.Minute)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	tr, err := projectors.NewTapTrimmer(store, store, []projectors.Checkpointer{proj},
		projectors.TapRetention{MaxAge: time.Hour, MaxBytes: 1 << 30, Now: func() time.Time { return now },
			Logger: slog.New(slog.NewTextHandler(&logs, nil))}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tr.Trim(ctx); err != nil || n != 5 {
		t.Fatalf("trim removed %d, %v; want the 5 below the group's lowest pending entry", n, err)
	}
	groups, err := store.TapGroups(ctx, 0)
	if err != nil || len(groups) != 1 || groups[0].Floor != recs[5].Position || !groups[0].FloorPending || groups[0].Pending != 3 || groups[0].Cut != nil {
		t.Fatalf("tap groups %+v, %v", groups, err)
	}

	now = now.Add(2 * time.Hour) // the group's oldest needed entry is now older than MaxAge
	if n, err := tr.Trim(ctx); err != nil || n != 10 {
		t.Fatalf("trim removed %d, %v; want the 10 below the projector's checkpoint", n, err)
	}
	if got := cutsOf(t, reg, "g"); got != 1 {
		t.Errorf("mpim_tap_groups_cut_total{group=g} = %v, want 1", got)
	}
	wantLog := fmt.Sprintf("level=ERROR msg=\"tap group cut loose: it loses events the trim removes before it read them\" group=g partition=0 from=%s to=%s trim_to=%s",
		recs[5].Position, recs[14].Position, recs[15].Position)
	if !strings.Contains(logs.String(), wantLog) {
		t.Errorf("log lacks %q:\n%s", wantLog, logs.String())
	}
	_, err = tap.Read(ctx, 0, 10, 10*time.Millisecond)
	var cut *eventstore.TapCutError
	if !errors.As(err, &cut) || cut.Group != "g" || cut.Partition != 0 || cut.From != recs[5].Position || cut.To != recs[14].Position {
		t.Fatalf("read after the cut: %v, want a TapCutError from %s to %s", err, recs[5].Position, recs[14].Position)
	}
	wantMsg := fmt.Sprintf("lost events of partition 0 from %s to %s", recs[5].Position, recs[14].Position)
	if !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("error %q lacks %q", err, wantMsg)
	}

	// A cut group holds nothing back; the marker grows with later trims.
	proj.pos[0] = recs[18].Position
	if n, err := tr.Trim(ctx); err != nil || n != 3 {
		t.Fatalf("trim after the cut removed %d, %v; want 3", n, err)
	}
	cuts, err := tap.AcceptLoss(ctx)
	if err != nil || len(cuts) != 1 || cuts[0].From != recs[5].Position || cuts[0].To != recs[17].Position {
		t.Fatalf("accepted %+v, %v; want the loss from %s to %s", cuts, err, recs[5].Position, recs[17].Position)
	}
	got := tapRead(t, tap, 0, 10, true)
	if len(got) != 2 || got[0].Position != recs[18].Position {
		t.Fatalf("after accepting the loss read %d entries from %v, want 2 from the stream's first %s", len(got), got, recs[18].Position)
	}
	if cuts, err := tap.AcceptLoss(ctx); err != nil || len(cuts) != 0 {
		t.Fatalf("a second accept: %+v, %v", cuts, err)
	}
}

// A partition stream larger than MaxBytes cuts the groups holding it back
// below the projectors; a group at the head is not cut.
func TestTapGroupCutLooseBeyondMaxBytes(t *testing.T) {
	ctx := context.Background()
	store, _, _ := openStore(t, 1)
	appendMessages(t, store, "d/t.b", 10)
	recs, _ := store.ReadPartition(ctx, 0, eventstore.Position{}, 100)
	slow, err := store.NewTap(ctx, eventstore.TapConfig{Group: "slow", Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := store.NewTap(ctx, eventstore.TapConfig{Group: "fast", Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	tapRead(t, slow, 0, 2, true)
	tapRead(t, fast, 0, 10, true)
	proj := newMem()
	proj.pos[0] = recs[8].Position
	bytes, err := store.StreamBytes(ctx, 0)
	if err != nil || bytes <= 0 {
		t.Fatalf("stream bytes %d, %v", bytes, err)
	}
	tr, err := projectors.NewTapTrimmer(store, store, []projectors.Checkpointer{proj},
		projectors.TapRetention{MaxAge: time.Hour, MaxBytes: bytes - 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tr.Trim(ctx); err != nil || n != 8 {
		t.Fatalf("trim removed %d, %v; want 8", n, err)
	}
	groups, _ := store.TapGroups(ctx, 0)
	for _, g := range groups {
		switch {
		case g.Name == "slow" && (g.Cut == nil || g.Cut.From != recs[2].Position || g.Cut.To != recs[7].Position):
			t.Errorf("slow group's cut %+v, want from %s to %s", g.Cut, recs[2].Position, recs[7].Position)
		case g.Name == "fast" && g.Cut != nil:
			t.Errorf("the group at the head was cut: %+v", g.Cut)
		}
	}
	if _, err := projectors.NewTapTrimmer(store, store, []projectors.Checkpointer{proj}, projectors.TapRetention{MaxAge: -1, MaxBytes: 0}, nil); err == nil ||
		!strings.Contains(err.Error(), "tap retention must be positive") {
		t.Fatalf("a zero retention: %v", err)
	}
}

// cutsOf reads mpim_tap_groups_cut_total{group} from reg.
func cutsOf(t *testing.T, reg *prometheus.Registry, group string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mpim_tap_groups_cut_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == group {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
