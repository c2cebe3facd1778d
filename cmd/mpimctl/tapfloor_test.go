package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mpim/mpim/eventstore"
)

// readStats runs `mpimctl stats --json`.
func readStats(t *testing.T, base []string) stats {
	t.Helper()
	out, _, err := ctl(t, append([]string{"stats", "--json"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	var st stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats %q: %v", out, err)
	}
	return st
}

// `stats` lists tap groups per partition with floor, lag, pending and cut
// markers; a cut group's tap fails with the range it lost until
// --accept-loss.
func TestStatsListsTapGroupsAndTapReportsItsLoss(t *testing.T) {
	w := newTapWorld(t)
	base := w.base
	if st := readStats(t, base); len(st.TapGroups) != 0 {
		t.Fatalf("tap groups before any tap: %+v", st.TapGroups)
	}
	if out, errOut, err := ctl(t, append([]string{"stats"}, base...)...); err != nil || !strings.Contains(out, "TAP GROUPS") || !strings.Contains(out, "none") {
		t.Fatalf("stats table without tap groups: %v %s\n%s", err, errOut, out)
	}
	if _, _, err := ctl(t, append([]string{"tap", "--group", "done", "--limit", "9"}, base...)...); err != nil {
		t.Fatal(err)
	}
	// "cut" is a group the trim cut loose on the partition of the messages.
	ctx := context.Background()
	store := w.store
	if _, err := store.NewTap(ctx, eventstore.TapConfig{Group: "cut", Consumer: "x"}); err != nil {
		t.Fatal(err)
	}
	p, recs := -1, []eventstore.Recorded(nil)
	for q := range 4 {
		if r, err := store.ReadPartition(ctx, q, eventstore.Position{}, 100); err == nil && len(r) > len(recs) {
			p, recs = q, r
		}
	}
	if len(recs) < 3 {
		t.Fatalf("the largest partition holds %d entries", len(recs))
	}
	if _, err := store.CutTap(ctx, p, "cut", eventstore.Position{}, false, recs[2].Position); err != nil {
		t.Fatal(err)
	}
	st := readStats(t, base)
	var done, cut int
	for _, g := range st.TapGroups {
		switch {
		case g.Group == "done" && g.Pending == 0 && g.Lag != nil && *g.Lag == 0 && g.CutFrom == "":
			done++
		case g.Group == "cut" && g.Partition == p && g.CutFrom == recs[0].Position.String() && g.CutTo == recs[1].Position.String() && g.Floor == "0-0":
			cut++
		case g.Group == "cut" && g.Partition != p && g.CutFrom == "":
		default:
			t.Errorf("unexpected tap group line %+v", g)
		}
	}
	if done != 4 || cut != 1 {
		t.Errorf("stats listed %d partitions of the caught-up group (want 4) and %d cut markers (want 1): %+v", done, cut, st.TapGroups)
	}
	out, _, err := ctl(t, append([]string{"stats"}, base...)...)
	if err != nil || !strings.Contains(out, "TAP GROUP") || !strings.Contains(out, recs[0].Position.String()+" to "+recs[1].Position.String()) {
		t.Errorf("stats table: %v\n%s", err, out)
	}

	_, errOut, err := ctl(t, append([]string{"tap", "--group", "cut", "--limit", "9"}, base...)...)
	want := fmt.Sprintf("lost events of partition %d from %s to %s", p, recs[0].Position, recs[1].Position)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("tap of a cut group: %v (stderr %s), want %q", err, errOut, want)
	}
	if _, _, err := ctl(t, append([]string{"tap", "--group", "cut", "--no-ack", "--limit", "9"}, base...)...); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("tap --no-ack of a cut group: %v, want %q (a peek must not skip the lost range)", err, want)
	}
	out, errOut, err = ctl(t, append([]string{"tap", "--group", "cut", "--accept-loss", "--limit", "1"}, base...)...)
	if err != nil || !strings.Contains(errOut, fmt.Sprintf("accepted the loss of partition %d from %s to %s", p, recs[0].Position, recs[1].Position)) || out == "" {
		t.Fatalf("tap --accept-loss: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	if _, _, err := ctl(t, append([]string{"tap", "--group", "cut", "--accept-loss", "--no-ack"}, base...)...); err == nil ||
		!strings.Contains(err.Error(), "--accept-loss changes the group: it does not go with --no-ack") {
		t.Errorf("tap --accept-loss --no-ack: %v", err)
	}
	for _, g := range readStats(t, base).TapGroups {
		if g.CutFrom != "" {
			t.Errorf("a cut marker after --accept-loss: %+v", g)
		}
	}
}
