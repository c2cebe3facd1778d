package command

import (
	"context"
	"encoding/json"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
)

// A user's history grows with every login (each appends DeviceLoggedIn), so
// loading a user by reading the whole stream would make the n-th login cost
// O(n). Users are loaded from a snapshot of the aggregate kept in Redis
// beside the history (eventstore.Snapshot) plus the events after it: the
// snapshot records its version and the history entry it ends at, and the
// store reads the events after that entry atomically with the aggregate's
// version, so a snapshot that does not continue into the stream (missing,
// expired, from an older deployment) is detected and the user is read in
// full instead. A load that read userSnapshotEvery events or more saves a
// new snapshot, so no load reads more than about userSnapshotEvery events
// once a snapshot exists; a user whose snapshot expired (userSnapshotTTL
// without a load) is read in full once. A snapshot rather than a bounded read
// of recent events: the password hash, the profile and the device set can
// have been set at any point of the history.
const (
	userSnapshotEvery  = 64
	userSnapshotTTL    = 7 * 24 * time.Hour
	userSnapshotFormat = 1 // change when domain.UserSnapshot changes meaning
)

// storedUserSnapshot is the encoding of a user's snapshot.
type storedUserSnapshot struct {
	Format int `json:"f"`
	domain.UserSnapshot
}

// fetchUser loads user id from its snapshot and the events after it, or
// from its whole history when the snapshot is missing or does not fit.
func (s *Service) fetchUser(ctx context.Context, id domain.UserID) (*domain.User, error) {
	agg := string(id)
	snap, ok, err := s.store.LoadSnapshot(ctx, agg, agg)
	if err != nil {
		return nil, domain.Errorf(domain.EUnavailable, "command: loading %s: %w", agg, err)
	}
	var stored storedUserSnapshot
	if ok && (json.Unmarshal(snap.Data, &stored) != nil || stored.Format != userSnapshotFormat || stored.Version != snap.Version) {
		ok = false
	}
	var recs []eventstore.Recorded
	if ok {
		recs, ok, err = s.store.ReadAggregateAfter(ctx, agg, agg, snap)
		if err != nil {
			return nil, domain.Errorf(domain.EUnavailable, "command: loading %s: %w", agg, err)
		}
	}
	if !ok {
		stored = storedUserSnapshot{}
		if recs, err = s.store.ReadAggregate(ctx, agg, agg); err != nil {
			return nil, domain.Errorf(domain.EUnavailable, "command: loading %s: %w", agg, err)
		}
	}
	events, err := decodeEvents(agg, recs)
	if err != nil {
		return nil, err
	}
	u, err := domain.RestoreUser(id, stored.UserSnapshot, events)
	if err != nil {
		return nil, err
	}
	if len(recs) >= userSnapshotEvery {
		s.saveUserSnapshot(ctx, u, recs[len(recs)-1].Position)
	}
	return u, nil
}

// saveUserSnapshot stores u's state ending at history entry pos. A failure
// is not an error of the load: the next load reads further and tries again.
func (s *Service) saveUserSnapshot(ctx context.Context, u *domain.User, pos eventstore.Position) {
	data, err := json.Marshal(storedUserSnapshot{Format: userSnapshotFormat, UserSnapshot: u.Snapshot()})
	if err != nil {
		return
	}
	_ = s.store.SaveSnapshot(ctx, string(u.ID()), string(u.ID()), eventstore.Snapshot{Version: u.Version(), Position: pos, Data: data}, userSnapshotTTL)
}
