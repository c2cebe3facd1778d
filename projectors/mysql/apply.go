package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// ErrOutOfOrder is wrapped by the error Apply returns when an event's
// aggregate version does not follow the version stored on the row it
// changes: the event was applied before (a doubled event) or an earlier one
// never was (a skipped event). Checkpoints make both impossible, so this is
// a bug to investigate; the batch is not applied and the partition stops
// until it is fixed.
var ErrOutOfOrder = errors.New("mysql: event out of version order")

// item is one event of a batch with its decoded envelope.
type item struct {
	rec  *eventstore.Recorded
	meta codec.Meta
	ev   domain.Event
	err  error // not decodable into a domain event: quarantined
}

// decodeBatch decodes the batch's events (outside any transaction).
func decodeBatch(b *projectors.Batch) []item {
	items := make([]item, len(b.Events))
	for i := range b.Events {
		r := &b.Events[i]
		it := item{rec: r}
		it.meta, it.ev, it.err = r.Domain() // decoded once per process (projectors.SharedLog)
		items[i] = it
	}
	return items
}

// quarantined is an entry set aside, with why.
type quarantined struct {
	pos    eventstore.Position
	reason string
	raw    []byte
}

// applier applies one batch inside one transaction in four steps: collect
// the rows the batch touches, load them with one query per table, apply the
// events to them in memory in log order, and write what changed with
// multi-row statements. Only rows owned by the batch's partition are loaded
// and folded; user_conversations rows, which two partitions write, are
// written as commutative deltas instead (see ucDelta).
type applier struct {
	m         *ReadModel
	t         *tables
	tx        *sql.Tx
	partition int
	cur       *item // the event being applied

	quarantined []quarantined
	// reapply: a quarantined event is applied again out of order (see
	// ReadModel.Reapply): versions are neither checked nor moved.
	reapply bool

	// For each map, a key present means "wanted, and loaded"; a nil value
	// means the row does not exist (yet).
	users     map[string]*userRow
	usernames map[string]string // normalised username -> owner ("" none)
	devices   map[devKey]*deviceRow
	pairs     map[pairKey]*pairState
	groups    map[string]*groupRow
	convs     map[string]*convRow
	msgs      map[msgKey]*msgRow
	uc        map[ucKey]*ucDelta
	deletions map[delKey]ms
	periods   map[periodKey]periodEnd // membership periods opened or closed
	mutes     map[ucKey]*muteRow      // the batch's last mute per user and conversation; nil: unmuted
}

func newApplier(m *ReadModel, tx *sql.Tx, partition int) *applier {
	return &applier{
		m: m, t: &m.t, tx: tx, partition: partition,
		users: map[string]*userRow{}, usernames: map[string]string{}, devices: map[devKey]*deviceRow{},
		pairs: map[pairKey]*pairState{}, groups: map[string]*groupRow{}, convs: map[string]*convRow{},
		msgs: map[msgKey]*msgRow{}, uc: map[ucKey]*ucDelta{}, deletions: map[delKey]ms{},
		periods: map[periodKey]periodEnd{}, mutes: map[ucKey]*muteRow{},
	}
}

func (a *applier) run(ctx context.Context, items []item, skipped []*eventstore.DecodeError) error {
	for i := range items {
		if items[i].err == nil {
			a.want(&items[i])
		}
	}
	skippedAggs := make([]string, len(skipped))
	for i, de := range skipped {
		skippedAggs[i] = aggregateOfRaw(de.Raw)
		a.wantAggregate(skippedAggs[i])
	}
	if err := a.load(ctx); err != nil {
		return err
	}
	if err := a.m.step(ctx, "loaded"); err != nil {
		return err
	}
	var versions map[string]uint64
	if a.reapply {
		versions = a.versions()
	}
	for i := range items {
		it := &items[i]
		a.cur = it
		if it.err != nil {
			_ = a.quarantine("undecodable event: %v", it.err) // always nil
			continue
		}
		if err := a.apply(it); err != nil {
			return err
		}
	}
	a.cur = nil
	if a.reapply {
		a.restoreVersions(versions)
	}
	for i, de := range skipped {
		a.quarantined = append(a.quarantined, quarantined{pos: de.Position, reason: undecodablePrefix + de.Err.Error(), raw: de.Raw})
		a.skipVersion(skippedAggs[i])
	}
	return a.write(ctx)
}

// aggregateOfRaw returns the aggregate of an undecodable entry's envelope
// bytes when they parse at all (an event type this binary does not know, a
// bad version field), else "".
func aggregateOfRaw(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var env mpimv1.Event
	if proto.Unmarshal(raw, &env) != nil {
		return ""
	}
	return env.GetAggregate()
}

// wantAggregate loads the versioned row of aggregate agg, if it has one.
func (a *applier) wantAggregate(agg string) {
	switch {
	case agg == "":
	case domain.UserID(agg).Valid():
		a.wantUser(agg)
	case domain.GroupID(agg).Valid():
		a.wantGroup(agg)
	case domain.ConversationID(agg).Valid():
		a.wantConv(agg)
	}
}

// skipVersion accounts for an undecodable entry of aggregate agg: it was the
// next event of the aggregate, so the row's version moves past it and the
// following events are not taken for a gap.
func (a *applier) skipVersion(agg string) {
	if u := a.users[agg]; u != nil {
		u.version++
		u.dirty = true
	}
	if g := a.groups[agg]; g != nil {
		g.version++
		g.dirty = true
	}
	if c := a.convs[agg]; c != nil {
		c.version++
		c.dirty = true
	}
}

// want records the rows event it needs.
func (a *applier) want(it *item) {
	agg := it.meta.Aggregate
	switch e := it.ev.(type) {
	case domain.UserRegistered:
		a.wantUser(agg)
		if _, ok := a.usernames[e.Username]; !ok {
			a.usernames[e.Username] = ""
		}
	case domain.ProfileUpdated, domain.PasswordChanged:
		a.wantUser(agg)
	case domain.DeviceLoggedIn:
		a.wantUserDevice(agg, e.Device)
	case domain.DeviceLoggedOut:
		a.wantUserDevice(agg, e.Device)
	case domain.PushTokenRegistered:
		a.wantUserDevice(agg, e.Device)
	case domain.PushTokenRemoved:
		a.wantUserDevice(agg, e.Device)
	case domain.FriendRequested, domain.FriendRequestAccepted, domain.FriendRequestDeclined,
		domain.FriendRemoved, domain.UserBlocked, domain.UserUnblocked:
		if k, ok := pairOf(agg); ok {
			a.wantPair(k)
		}
	case domain.GroupCreated, domain.MemberAdded, domain.MemberJoined, domain.MemberLeft, domain.MemberKicked,
		domain.MemberRoleChanged, domain.GroupRenamed, domain.MemberMuted, domain.MemberUnmuted, domain.MemberUnbanned, domain.GroupDissolved,
		domain.GroupHistoryVisibilityChanged:
		if g := domain.GroupID(agg); g.Valid() {
			a.wantGroup(agg)
			a.wantConv(string(domain.GroupConversation(g)))
		}
	case domain.MessageSent:
		a.wantConversation(agg)
	case domain.MessageRecalled:
		a.wantConversation(agg)
		a.wantMsg(msgKey{agg, e.Seq})
	case domain.MessageEdited:
		a.wantConversation(agg)
		a.wantMsg(msgKey{agg, e.Seq})
	}
}

// wantConversation loads a conversation and, for a group's, the group.
func (a *applier) wantConversation(agg string) {
	c := domain.ConversationID(agg)
	if !c.Valid() {
		return
	}
	a.wantConv(agg)
	if g, ok := c.Group(); ok {
		a.wantGroup(string(g))
	}
}

// want adds k to m, with no row yet, unless it is there: the batch loads
// every row it wants before applying.
func want[K comparable, V any](m map[K]*V, k K) {
	if _, ok := m[k]; !ok {
		m[k] = nil
	}
}

func (a *applier) wantUser(id string) { want(a.users, id) }

// wantUserDevice loads user aggregate agg's row and its device's.
func (a *applier) wantUserDevice(agg string, dev domain.DeviceID) {
	a.wantUser(agg)
	want(a.devices, devKey{agg, string(dev)})
}

func (a *applier) wantGroup(id string) { want(a.groups, id) }

func (a *applier) wantConv(id string) { want(a.convs, id) }

func (a *applier) wantMsg(k msgKey) { want(a.msgs, k) }

func (a *applier) wantPair(k pairKey) {
	if _, ok := a.pairs[k]; !ok {
		a.pairs[k] = newPairState()
	}
}

func (a *applier) load(ctx context.Context) error {
	for _, load := range []func(context.Context) error{
		a.loadUsers, a.loadDevices, a.loadPairs, a.loadGroups, a.loadConvs, a.loadMsgs,
	} {
		if err := load(ctx); err != nil {
			return err
		}
	}
	return nil
}

// apply applies one decoded event to the loaded rows. An event whose time
// does not fit a DATETIME column is quarantined (the log may hold one from
// before the domain bounded times); it still moves its aggregate's version.
func (a *applier) apply(it *item) error {
	if !fitsDatetime(it.meta.OccurredAt) {
		a.skipVersion(it.meta.Aggregate)
		return a.quarantine("occurred at %d ms, a time beyond the DATETIME columns", it.meta.OccurredAt.UnixMilli())
	}
	switch it.ev.(type) {
	case domain.UserRegistered, domain.ProfileUpdated, domain.PasswordChanged, domain.DeviceLoggedIn, domain.DeviceLoggedOut,
		domain.PushTokenRegistered, domain.PushTokenRemoved:
		return a.applyUser(it)
	case domain.UsernameClaimed:
		// The username aggregate only reserves the name; users.username
		// (unique) carries it from the UserRegistered appended with it.
		return nil
	case domain.FriendRequested, domain.FriendRequestAccepted, domain.FriendRequestDeclined,
		domain.FriendRemoved, domain.UserBlocked, domain.UserUnblocked:
		return a.applyContact(it)
	case domain.GroupCreated, domain.MemberAdded, domain.MemberJoined, domain.MemberLeft, domain.MemberKicked,
		domain.MemberRoleChanged, domain.GroupRenamed, domain.MemberMuted, domain.MemberUnmuted, domain.MemberUnbanned, domain.GroupDissolved,
		domain.GroupHistoryVisibilityChanged:
		return a.applyGroup(it)
	case domain.MessageSent, domain.MessageRecalled, domain.MessageEdited:
		return a.applyConversation(it)
	case domain.ConversationRead, domain.MessageDeletedForMe, domain.ConversationMuted, domain.ConversationUnmuted:
		return a.applyReader(it)
	}
	return a.quarantine("no read-model effect is defined for %s", it.ev.EventType())
}

// quarantine sets the current event aside with a reason and returns nil, so
// handlers can end with `return a.quarantine(...)`.
func (a *applier) quarantine(format string, args ...any) error {
	it := a.cur
	a.quarantined = append(a.quarantined, quarantined{pos: it.rec.Position, reason: fmt.Sprintf(format, args...), raw: it.rec.Raw})
	return nil
}

// follow returns nil if version v is the next of a row at version have, and
// an ErrOutOfOrder error otherwise.
func (a *applier) follow(kind, id string, have, v uint64) error {
	if v == have+1 || a.reapply {
		return nil
	}
	what := "skipped"
	if v <= have {
		what = "applied twice"
	}
	return fmt.Errorf("%w: partition %d position %s: %s %s is at version %d, the event (%s) has version %d: an event was %s",
		ErrOutOfOrder, a.partition, a.cur.rec.Position, kind, id, have, a.cur.ev.EventType(), v, what)
}

// at returns the current event's time.
func (a *applier) at() ms { return msOf(a.cur.meta.OccurredAt) }

// write sends every change, table by table, rows in key order (the same lock
// order in every transaction, which keeps deadlocks between partitions rare).
func (a *applier) write(ctx context.Context) error {
	for _, w := range []func(context.Context) error{
		a.writeUsers, a.writeDevices, a.writePairs, a.writeGroups, a.writePeriods, a.writeConvs, a.writeMsgs,
		a.writeUserConvs, a.writeDeletions, a.writeMutes, a.writeQuarantine,
	} {
		if err := w(ctx); err != nil {
			return err
		}
	}
	return a.m.step(ctx, "written")
}

func (a *applier) multi(head, tail string, ncols int) *multiRow {
	return newMultiRow(head, tail, ncols, a.m.cfg.MaxRowsPerStatement, a.m.stmts)
}

func (a *applier) writeQuarantine(ctx context.Context) error {
	return writeQuarantine(ctx, a.tx, ReadModelName, a.partition, a.quarantined, a.m.cfg.MaxRowsPerStatement)
}

// queryKeys runs a SELECT for keys (each a tuple of column values) in
// chunks: sqlFor(n) returns the statement for n keys, taking the tuples'
// values in order, and scan reads one row.
func (a *applier) queryKeys(ctx context.Context, keys [][]any, sqlFor func(n int) string, scan func(*sql.Rows) error) error {
	const chunk = 500
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		args := make([]any, 0, n*len(keys[0]))
		for _, k := range keys[:n] {
			args = append(args, k...)
		}
		q := sqlFor(n)
		rows, err := a.tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("mysql: %s: %w", firstWords(q), err)
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return fmt.Errorf("mysql: %s: %w", firstWords(q), err)
			}
		}
		err = rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return fmt.Errorf("mysql: %s: %w", firstWords(q), err)
		}
		keys = keys[n:]
	}
	return nil
}

// inList returns a function building "head IN (?, ...)" for n keys.
func inList(head string) func(n int) string {
	return func(n int) string { return head + " IN (" + placeholders(n) + ")" }
}

// orList returns a function building "head (c1 = ? AND c2 = ?) OR (...)" for
// n composite keys of the columns cols.
func orList(head string, cols ...string) func(n int) string {
	conj := "(" + strings.Join(cols, " = ? AND ") + " = ?)"
	return func(n int) string {
		var sb strings.Builder
		sb.WriteString(head)
		sb.WriteByte(' ')
		for i := range n {
			if i > 0 {
				sb.WriteString(" OR ")
			}
			sb.WriteString(conj)
		}
		return sb.String()
	}
}

// deleteKeys deletes the rows of table whose columns cols equal one of keys.
func (a *applier) deleteKeys(ctx context.Context, table string, cols []string, keys [][]any) error {
	if len(keys) == 0 {
		return nil
	}
	sqlFor := orList("DELETE FROM "+table+" WHERE", cols...)
	const chunk = 500
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		args := make([]any, 0, n*len(cols))
		for _, k := range keys[:n] {
			args = append(args, k...)
		}
		if _, err := a.tx.ExecContext(ctx, sqlFor(n), args...); err != nil {
			return fmt.Errorf("mysql: deleting from %s: %w", table, err)
		}
		keys = keys[n:]
	}
	return nil
}

// sortedKeys returns m's keys sorted by cmpFn.
// writeRows adds a row to w for every entry of m, in the key order of
// cmpFn, and flushes w. row returns the entry's column values, or nil to
// write nothing for it.
func writeRows[K comparable, V any](ctx context.Context, tx *sql.Tx, w *multiRow, m map[K]V, cmpFn func(a, b K) int, row func(K, V) []any) error {
	for _, k := range sortedKeys(m, cmpFn) {
		if vals := row(k, m[k]); vals != nil {
			if err := w.add(ctx, tx, vals...); err != nil {
				return err
			}
		}
	}
	return w.flush(ctx, tx)
}

// keyTuples returns the key of every entry of m as a tuple of column
// values, for queryKeys.
func keyTuples[K comparable, V any](m map[K]V, tuple func(K) []any) [][]any {
	keys := make([][]any, 0, len(m))
	for k := range m {
		keys = append(keys, tuple(k))
	}
	return keys
}

func sortedKeys[K comparable, V any](m map[K]V, cmpFn func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmpFn)
	return keys
}

// Checks that keep a value from failing a strict-mode insert (which would
// wedge the partition): text must be valid UTF-8 of at most max characters,
// binary strings at most max bytes.
func fitsText(s string, max int) bool {
	return utf8.ValidString(s) && (len(s) <= max || utf8.RuneCountInString(s) <= max)
}

func fitsBytes(s string, max int) bool { return len(s) <= max }

// truncateRunes cuts s to at most n characters, replacing invalid UTF-8.
func truncateRunes(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

func cmpString(a, b string) int { return cmp.Compare(a, b) }
