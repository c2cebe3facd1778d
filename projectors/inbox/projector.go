package inbox

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/luascript"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/redis/go-redis/v9"
)

// Name is the projector's name.
const Name = "inbox"

var (
	//go:embed begin.lua
	beginLua string
	//go:embed commit.lua
	commitLua string
	//go:embed quota.lua
	quotaLua string
	//go:embed append.lua
	appendLua string
)

// Projector is the inbox projector. It is safe for concurrent use by the
// owners of different partitions; one partition is applied by one owner at a
// time (the Projector contract).
type Projector struct {
	rdb  redis.UniversalClient
	cfg  Config
	keys delivery.Keys
	// channels publishes notifications: sharded pub/sub on a cluster.
	channels delivery.Channels
	routes   *routeCache
	last     *lastIDs
	ckpt     *redisckpt.Store
	begin    *redis.Script
	commit   *redis.Script
	quota    *redis.Script
	// appendScript writes one inbox's entries of a batch on a cluster
	// (writeScripted).
	appendScript *redis.Script
	cluster      bool // rdb is a Redis Cluster client
	m            *metrics
	// payloads holds *[]byte buffers that notifications are encoded into
	// for PUBLISH; finish returns them after its pipeline has run (never
	// before: the pipeline writes them then). Buffers over
	// maxPooledPayload are left to the garbage collector.
	payloads sync.Pool
}

// maxPooledPayload bounds the buffers kept in Projector.payloads.
const maxPooledPayload = 64 << 10

var (
	_ projectors.Projector    = (*Projector)(nil)
	_ projectors.Checkpointer = (*Projector)(nil)
)

// New returns the inbox projector on rdb (the caller keeps ownership of the
// client). It fails on an invalid configuration or a metrics registration
// conflict.
func New(rdb redis.UniversalClient, cfg Config) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("inbox: projector needs a Redis client")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	keys := delivery.NewKeys(cfg.Prefix)
	return &Projector{
		rdb: rdb, cfg: cfg, keys: keys, channels: delivery.ChannelsOf(rdb), m: m, ckpt: redisckpt.New(rdb, cfg.Prefix, Name),
		begin: luascript.New(beginLua), commit: luascript.New(commitLua), quota: redis.NewScript(quotaLua),
		routes: newRouteCache(keys, &cfg, m), last: newLastIDs(cfg.RouteCacheEntries),
		appendScript: redis.NewScript(appendLua), cluster: isCluster(rdb),
	}, nil
}

// Name returns "inbox".
func (p *Projector) Name() string { return Name }

// The projector's own keys, per partition N, under the hash tag of the
// partition's checkpoint (redisckpt) so the checkpoint and the member sets
// change in one script:
//
//	<prefix>proj:{inbox:pN}:ckpt              hash: pos (checkpoint), token (fencing token)
//	<prefix>proj:{inbox:pN}:members:<group>   set: the group's members at the checkpoint
//	<prefix>proj:{inbox:pN}:history:<group>   hash: the group's history state at the
//	                                          checkpoint: last (the conversation's last
//	                                          seq), visible ("1": history visible to new
//	                                          members), from:<user> (the seq the member's
//	                                          membership began at)
//	<prefix>quarantine:inbox                  stream: quarantined entries
func (p *Projector) membersKey(partition int, g domain.GroupID) string {
	return p.ckpt.Tag(partition) + "members:" + string(g)
}

func (p *Projector) historyKey(partition int, g domain.GroupID) string {
	return p.ckpt.Tag(partition) + "history:" + string(g)
}

func (p *Projector) quarantineKey() string { return p.cfg.Prefix + "quarantine:" + Name }

// Claim records token as the partition's fencing token and returns its
// checkpoint. It fails with projectors.ErrFenced if a newer token was
// claimed.
func (p *Projector) Claim(ctx context.Context, partition int, token uint64) (eventstore.Position, error) {
	return p.ckpt.Claim(ctx, partition, token)
}

// Checkpoint returns the partition's checkpoint without claiming it.
func (p *Projector) Checkpoint(ctx context.Context, partition int) (eventstore.Position, error) {
	return p.ckpt.Checkpoint(ctx, partition)
}

// decoded is one event of a batch, decoded to the domain.
type decoded struct {
	rec *eventstore.Recorded
	agg string
	ev  domain.Event
}

// quarantined is an entry recorded in the quarantine stream.
type quarantined struct {
	partition int
	position  eventstore.Position
	reason    string
	raw       []byte
}

// Apply writes the batch's inbox entries, notifies the gateways of the
// recipients that are online and moves the checkpoint from b.After to b.To
// (see the package comment for the round trips and guarantees). It returns
// an error wrapping projectors.ErrFenced or projectors.ErrCheckpointMoved,
// having written nothing, when the batch may not be applied; any other
// error leaves the checkpoint at b.After, and the runner applies the batch
// again.
func (p *Projector) Apply(ctx context.Context, b *projectors.Batch) error {
	events, bad := decodeBatch(b)
	var groups []domain.GroupID
	seen := make(map[domain.GroupID]bool)
	for _, d := range events {
		if g, ok := groupOf(d.agg, d.ev); ok && !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
	}
	view, err := p.start(ctx, b, groups)
	if err != nil {
		return err
	}
	notes, err := p.write(ctx, b, events, bad, view)
	if err != nil {
		return err
	}
	return p.finish(ctx, b, view.changes(groups), notes)
}

// start is round trip 1: the fencing check, and the member sets of groups
// as of the checkpoint.
func (p *Projector) start(ctx context.Context, b *projectors.Batch, groups []domain.GroupID) (membership, error) {
	keys := make([]string, 1+2*len(groups))
	keys[0] = p.ckpt.Key(b.Partition)
	for i, g := range groups {
		keys[1+2*i], keys[2+2*i] = p.membersKey(b.Partition, g), p.historyKey(b.Partition, g)
	}
	res, err := p.begin.Run(ctx, p.rdb, keys, redisckpt.FormatToken(b.Token), b.After.String()).Slice()
	if err != nil {
		return nil, fmt.Errorf("inbox: starting batch of partition %d: %w", b.Partition, err)
	}
	if err := p.ckpt.Verdict(res, b.Partition, b.Token); err != nil {
		return nil, err
	}
	if len(res) != 1+2*len(groups) {
		return nil, fmt.Errorf("inbox: begin script returned %d replies for %d groups", len(res)-1, len(groups))
	}
	view := make(membership, len(groups))
	for i, g := range groups {
		users, err := stringSlice(res[1+2*i])
		if err != nil {
			return nil, fmt.Errorf("inbox: members of %s: %w", g, err)
		}
		flat, err := stringSlice(res[2+2*i])
		if err != nil {
			return nil, fmt.Errorf("inbox: history of %s: %w", g, err)
		}
		if len(flat)%2 != 0 {
			return nil, fmt.Errorf("inbox: history of %s: %d fields", g, len(flat))
		}
		hist := make(map[string]string, len(flat)/2)
		for j := 0; j < len(flat); j += 2 {
			hist[flat[j]] = flat[j+1]
		}
		view.load(g, users, hist)
	}
	return view, nil
}

// written is one inbox entry of a batch for one recipient and its XADD.
type written struct {
	user  domain.UserID
	entry *delivery.Entry
	args  *redis.XAddArgs // without the stream: shared by the event's recipients
	size  int64
	cmd   *redis.StringCmd
}

// write is round trip 2: every recipient's entries, the quarantine records
// and the recipients' presence routes, in one transaction (MULTI/EXEC), so
// that each recipient's entries of the batch are contiguous in its inbox
// and the entry just before the first is known (the Prev a notification
// carries): either read by an XREVRANGE before them, or, for a user with
// one entry whose inbox's last id this process remembers, proven by
// appending the entry with the id right after it (see lastIDs). A refused
// claim costs one more transaction (appendAgain). It moves view past the
// batch and returns the notifications to publish.
func (p *Projector) write(ctx context.Context, b *projectors.Batch, events []decoded, bad []quarantined, view membership) (map[string]*delivery.Notification, error) {
	// The audience moves view, so it is computed once; the pipeline below
	// may run twice.
	var entries []written
	var users []domain.UserID // recipients, first-seen order
	seen := make(map[domain.UserID]struct{})
	once := make(map[domain.UserID]struct{})
	for _, d := range events {
		var (
			e    *delivery.Entry
			args *redis.XAddArgs
			size int64
		)
		clear(once)
		view.audience(d.agg, d.ev, func(u domain.UserID) {
			if _, dup := once[u]; dup || !u.Valid() {
				return
			}
			once[u] = struct{}{}
			if e == nil {
				e = entryOf(b.Partition, d)
				fields := e.AppendFields(make([]any, 0, 12))
				args = &redis.XAddArgs{MaxLen: p.cfg.Window, Approx: true, Values: fields}
				size = fieldsSize(fields)
			}
			entries = append(entries, written{user: u, entry: e, args: args, size: size})
			if _, ok := seen[u]; !ok {
				seen[u] = struct{}{}
				users = append(users, u)
			}
		})
	}
	if len(entries) == 0 && len(bad) == 0 {
		return nil, nil
	}
	now := p.cfg.Now()
	routes := p.routes.plan(users, now)
	perUser := make(map[domain.UserID]int, len(users))
	for i := range entries {
		perUser[entries[i].user]++
	}
	var (
		claims map[domain.UserID]streamid.ID
		before = make(map[domain.UserID]*redis.XMessageSliceCmd, len(users))
		counts = make(map[domain.UserID]*redis.IntCmd, len(users))
		err    error
	)
	if p.cluster {
		err = p.writeScripted(ctx, b.Partition, entries, users, before, counts, routes, bad)
	} else {
		claims, err = p.writeTx(ctx, b.Partition, entries, users, before, counts, routes, bad, perUser, now)
	}
	if err != nil {
		return nil, err
	}
	if err := p.enforceQuota(ctx, counts); err != nil {
		return nil, fmt.Errorf("inbox: byte quota of partition %d: %w", b.Partition, err)
	}
	if err := p.waitReplicated(ctx, users); err != nil {
		return nil, fmt.Errorf("inbox: partition %d: %w", b.Partition, err)
	}
	p.m.entries.Add(float64(len(entries)))
	heads := make(map[domain.UserID]*delivery.Head, len(users))
	for _, u := range users {
		h := &delivery.Head{User: u, Prev: "0-0"}
		if x, ok := claims[u]; ok {
			h.Prev = x.String()
		} else if msgs := before[u].Val(); len(msgs) > 0 {
			h.Prev = msgs[0].ID
		}
		heads[u] = h
	}
	for _, w := range entries { // in transaction order, so in inbox order
		h := heads[w.user]
		h.Last = w.cmd.Val()
		h.Entries = append(h.Entries, delivery.Carried{ID: h.Last, Entry: *w.entry})
	}
	if !p.cluster { // claims are made on one server only (writeTx)
		for u, h := range heads {
			if last, err := streamid.Parse(h.Last); err == nil {
				p.last.remember(u, last)
			}
		}
	}
	return p.notifications(p.routes.resolve(ctx, p.rdb, routes), heads), nil
}

// appendAgain appends the only entry of each refused user again, in one
// transaction after a read of the inbox's last id (into before), as an
// unclaimed entry is appended. The entries' bytes were already counted.
func (p *Projector) appendAgain(ctx context.Context, entries []written, refused map[domain.UserID]bool, before map[domain.UserID]*redis.XMessageSliceCmd) error {
	if len(refused) == 0 {
		return nil
	}
	pipe := p.rdb.TxPipeline()
	for i := range entries {
		if w := &entries[i]; refused[w.user] {
			before[w.user] = pipe.XRevRangeN(ctx, p.keys.Inbox(w.user), "+", "-", 1)
			a := *w.args
			a.Stream = p.keys.Inbox(w.user)
			w.cmd = pipe.XAdd(ctx, &a)
		}
	}
	return execIgnoring(ctx, pipe, func(redis.Cmder) bool { return false })
}

// encode encodes n into a buffer of p.payloads; release it once the
// PUBLISH that carries it has been written.
func (p *Projector) encode(n *delivery.Notification) *[]byte {
	b, _ := p.payloads.Get().(*[]byte)
	if b == nil {
		b = new([]byte)
	}
	*b = n.AppendEncoded((*b)[:0])
	return b
}

// release returns a buffer of encode to p.payloads unless it is over
// maxPooledPayload.
func (p *Projector) release(b *[]byte) {
	if cap(*b) <= maxPooledPayload {
		p.payloads.Put(b)
	}
}

// execIgnoring runs pipe and returns the first error of its commands for
// which skip is false (skip: the route change read, whose failure only
// costs lookups, and refused claims).
func execIgnoring(ctx context.Context, pipe redis.Pipeliner, skip func(redis.Cmder) bool) error {
	cmds, err := pipe.Exec(ctx)
	for _, c := range cmds {
		if c.Err() != nil && !skip(c) {
			return c.Err()
		}
	}
	if len(cmds) == 0 {
		return err
	}
	return nil
}

// finish is round trip 3: the checkpoint's compare-and-set with the
// membership changes, then one PUBLISH per gateway, in one pipeline.
// Notifications that fail are logged, not retried: the gateways' position
// checks repair them.
func (p *Projector) finish(ctx context.Context, b *projectors.Batch, changes []change, notes map[string]*delivery.Notification) error {
	keys, args := commitArgs(p.ckpt.Key(b.Partition), redisckpt.FormatToken(b.Token), b, changes, func(g domain.GroupID) (string, string) {
		return p.membersKey(b.Partition, g), p.historyKey(b.Partition, g)
	})
	pipe := p.rdb.Pipeline()
	commit := p.commit.EvalSha(ctx, pipe, keys, args...)
	gateways := make([]string, 0, len(notes))
	for gw := range notes {
		gateways = append(gateways, gw)
	}
	slices.Sort(gateways)
	published := make([]*redis.IntCmd, len(gateways))
	payloads := make([]*[]byte, len(gateways))
	for i, gw := range gateways {
		payloads[i] = p.encode(notes[gw])
		published[i] = p.channels.Publish(ctx, pipe, p.keys.Notify(gw), *payloads[i])
	}
	_, _ = pipe.Exec(ctx) // each command's error is checked below
	for _, b := range payloads {
		p.release(b)
	}
	res, err := commit.Slice()
	if errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server lost its scripts (restart, SCRIPT FLUSH): the commit did
		// not run; run it on its own, loading it.
		res, err = p.commit.Run(ctx, p.rdb, keys, args...).Slice()
	}
	if err != nil {
		return fmt.Errorf("inbox: committing partition %d: %w", b.Partition, err)
	}
	if err := p.ckpt.Verdict(res, b.Partition, b.Token); err != nil {
		return err
	}
	for i, cmd := range published {
		if err := cmd.Err(); err != nil {
			p.cfg.Logger.Warn("notification not published; the gateway's position check repairs it",
				"gateway", gateways[i], "partition", b.Partition, "err", err)
			continue
		}
		p.m.notifications.Inc()
	}
	return nil
}

// decodeBatch decodes the batch's events to the domain. Entries the runner
// skipped and envelopes the codec rejects are returned for quarantine.
func decodeBatch(b *projectors.Batch) ([]decoded, []quarantined) {
	events := make([]decoded, 0, len(b.Events))
	var bad []quarantined
	for i := range b.Events {
		r := &b.Events[i]
		_, ev, err := r.Domain()
		if err != nil {
			bad = append(bad, quarantined{partition: r.Partition, position: r.Position, reason: err.Error(), raw: r.Raw})
			continue
		}
		events = append(events, decoded{rec: r, agg: r.Event.GetAggregate(), ev: ev})
	}
	for _, s := range b.Skipped {
		reason := "undecodable"
		if s.Err != nil {
			reason = s.Err.Error()
		}
		bad = append(bad, quarantined{partition: s.Partition, position: s.Position, reason: reason, raw: s.Raw})
	}
	return events, bad
}

// enforceQuota trims the inboxes whose byte count passed the quota in this
// batch down to three quarters of it (quota.lua), so that a full inbox is
// trimmed once per quarter of its quota written, not after every entry.
// Entries are only ever trimmed, never refused: a device behind them syncs
// history by seq. The inbox may hold up to one batch's entries more than the
// quota between the batch's writes and this call.
func (p *Projector) enforceQuota(ctx context.Context, counts map[domain.UserID]*redis.IntCmd) error {
	low := strconv.FormatInt(p.cfg.QuotaBytes/4*3, 10)
	for u, n := range counts {
		if n.Val() <= p.cfg.QuotaBytes {
			continue
		}
		if err := p.quota.Run(ctx, p.rdb, []string{p.keys.Inbox(u), p.keys.InboxBytes(u)}, low).Err(); err != nil {
			return err
		}
		p.m.quotaTrims.Inc()
	}
	return nil
}

// fieldsSize is the bytes of an inbox entry as quota.lua counts them: the
// lengths of its field names and values.
func fieldsSize(fields []any) int64 {
	var n int64
	for _, f := range fields {
		switch v := f.(type) {
		case string:
			n += int64(len(v))
		case []byte:
			n += int64(len(v))
		default:
			n += int64(len(fmt.Sprint(v)))
		}
	}
	return n
}

// entryOf returns d's inbox entry, shared by every recipient's XADD.
func entryOf(partition int, d decoded) *delivery.Entry {
	e := &delivery.Entry{
		Type:      d.ev.EventType(),
		Partition: partition,
		Position:  d.rec.Position.String(),
		Version:   d.rec.Event.GetVersion(),
		Seq:       d.rec.Event.GetSeq(),
		Envelope:  d.rec.Raw,
	}
	copy(e.EventID[:], d.rec.Event.GetId())
	return e
}

// notifications groups the recipients with a live route by gateway: one
// Notification per gateway, each user once, users sorted. gateways holds
// each recipient's gateways (routeCache.resolve). A user's head carries the
// user's entries while the gateway's payload stays within NotifyBytes; past
// that, heads go without entries (the gateway reads those inboxes back).
func (p *Projector) notifications(gateways map[domain.UserID][]string, heads map[domain.UserID]*delivery.Head) map[string]*delivery.Notification {
	notes := make(map[string]*delivery.Notification)
	for u, gws := range gateways {
		for _, gw := range gws {
			n := notes[gw]
			if n == nil {
				n = &delivery.Notification{}
				notes[gw] = n
			}
			n.Users = append(n.Users, *heads[u])
		}
	}
	for _, n := range notes {
		slices.SortFunc(n.Users, func(a, b delivery.Head) int { return strings.Compare(string(a.User), string(b.User)) })
		size := 0
		for i := range n.Users {
			h := &n.Users[i]
			if size+h.Size() > p.cfg.NotifyBytes {
				h.Prev, h.Entries = "", nil
				p.m.headsOnly.Inc()
			}
			size += h.Size()
		}
	}
	return notes
}

// commitArgs builds the keys and arguments of commit.lua.
func commitArgs(ckpt, token string, b *projectors.Batch, changes []change, key func(domain.GroupID) (members, history string)) ([]string, []any) {
	keys := []string{ckpt}
	args := []any{token, b.After.String(), b.To.String()}
	for _, c := range changes {
		members, history := key(c.group)
		keys = append(keys, members, history)
		if c.drop {
			args = append(args, "d")
			continue
		}
		args = append(args, "s", len(c.added))
		for _, u := range c.added {
			args = append(args, string(u))
		}
		args = append(args, len(c.removed))
		for _, u := range c.removed {
			args = append(args, string(u))
		}
		var set, del []any
		for _, f := range slices.Sorted(maps.Keys(c.hist)) {
			if v := c.hist[f]; v != "" {
				set = append(set, f, v)
			} else {
				del = append(del, f)
			}
		}
		args = append(append(append(append(args, len(set)/2), set...), len(del)), del...)
	}
	return keys, args
}

// stringSlice converts a script's array reply of strings.
func stringSlice(v any) ([]string, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("reply %T is not an array", v)
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("reply element %T is not a string", x)
		}
		out[i] = s
	}
	return out, nil
}

var _ projectors.Quarantiner = (*Projector)(nil)

// Quarantine records the batch's only entry in the quarantine stream with
// cause as the reason and moves the checkpoint from b.After to b.To, with
// Apply's checks (projectors.Quarantiner); nobody's inbox receives it.
func (p *Projector) Quarantine(ctx context.Context, b *projectors.Batch, cause error) error {
	view, err := p.start(ctx, b, nil)
	if err != nil {
		return err
	}
	var bad []quarantined
	for _, r := range b.Events {
		bad = append(bad, quarantined{partition: b.Partition, position: r.Position, reason: "apply failed: " + cause.Error(), raw: r.Raw})
	}
	for _, s := range b.Skipped {
		bad = append(bad, quarantined{partition: b.Partition, position: s.Position, reason: "apply failed: " + cause.Error(), raw: s.Raw})
	}
	if _, err := p.write(ctx, b, nil, bad, view); err != nil {
		return err
	}
	return p.finish(ctx, b, nil, nil)
}

// isCluster reports whether rdb is a Redis Cluster client.
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}
