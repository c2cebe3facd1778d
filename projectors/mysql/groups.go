package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"maps"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// groupRow is a chat_groups row with the group's group_members rows, as
// loaded (origMembers) and as the batch leaves them (members).
type groupRow struct {
	name, owner               string
	open, historyVisible      bool
	created, updated, dissolv ms
	version                   uint64
	dirty                     bool
	members, origMembers      map[string]memberRow
}

// memberRow is a group_members row with the start of the member's current
// membership period (from, a group_member_periods row).
type memberRow struct {
	role       domain.Role
	muted      bool
	mutedUntil ms
	joined     ms
	from       uint64
}

// periodKey identifies a group_member_periods row.
type periodKey struct {
	group, user string
	from        uint64
}

// periodEnd is the end of a membership period: the conversation's last seq
// when it ended, or open while the membership lasts.
type periodEnd struct {
	to   uint64
	open bool
}

func (a *applier) loadGroups(ctx context.Context) error {
	if len(a.groups) == 0 {
		return nil
	}
	ids := keyTuples(a.groups, func(id string) []any { return []any{id} })
	err := a.queryKeys(ctx, ids,
		inList("SELECT group_id, name, owner_id, is_open, history_visible, created_at, updated_at, dissolved_at, version FROM "+a.t.groups+" WHERE group_id"),
		func(rows *sql.Rows) error {
			var id string
			g := &groupRow{members: map[string]memberRow{}}
			if err := rows.Scan(&id, &g.name, &g.owner, &g.open, &g.historyVisible, g.created.scan(), g.updated.scan(), g.dissolv.scan(), &g.version); err != nil {
				return err
			}
			a.groups[id] = g
			return nil
		})
	if err != nil {
		return err
	}
	ids = ids[:0]
	for id, g := range a.groups {
		if g != nil {
			ids = append(ids, []any{id})
		}
	}
	if len(ids) > 0 {
		err = a.queryKeys(ctx, ids,
			inList("SELECT group_id, user_id, role, muted, muted_until, joined_at FROM "+a.t.members+" WHERE group_id"),
			func(rows *sql.Rows) error {
				var gid, uid, role string
				var m memberRow
				if err := rows.Scan(&gid, &uid, &role, &m.muted, m.mutedUntil.scan(), m.joined.scan()); err != nil {
					return err
				}
				m.role = readmodel.ParseRole(role)
				a.groups[gid].members[uid] = m
				return nil
			})
		if err != nil {
			return err
		}
		err = a.queryKeys(ctx, ids,
			inList("SELECT group_id, user_id, from_seq FROM "+a.t.periods+" WHERE to_seq IS NULL AND group_id"),
			func(rows *sql.Rows) error {
				var gid, uid string
				var from uint64
				if err := rows.Scan(&gid, &uid, &from); err != nil {
					return err
				}
				if m, ok := a.groups[gid].members[uid]; ok {
					m.from = max(m.from, from)
					a.groups[gid].members[uid] = m
				}
				return nil
			})
		if err != nil {
			return err
		}
	}
	for _, g := range a.groups {
		if g != nil {
			g.origMembers = maps.Clone(g.members)
		}
	}
	return nil
}

// applyGroup applies an event of a group aggregate. GroupCreated (version 1)
// creates the rows; later events must carry the group's next version.
// Membership changes that name a non-member (or an existing member, for
// joins) make no sense and are quarantined; the version still moves.
func (a *applier) applyGroup(it *item) error {
	id, v, t := it.meta.Aggregate, it.meta.Version, a.at()
	gid := domain.GroupID(id)
	if !gid.Valid() {
		return a.quarantine("%s is not a group aggregate", id)
	}
	g := a.groups[id]
	if g == nil {
		c, ok := it.ev.(domain.GroupCreated)
		switch {
		case !ok:
			return a.quarantine("unknown group %s", id)
		case v != 1:
			return a.quarantine("creation of %s at version %d", id, v)
		case c.Group != gid:
			return a.quarantine("group aggregate %s creates %s", id, c.Group)
		case !c.Owner.Valid() || !fitsText(c.Name, 255):
			return a.quarantine("creation of %s has a malformed owner or name", id)
		}
		for _, u := range c.Members {
			if !u.Valid() {
				return a.quarantine("creation of %s names malformed member %q", id, u)
			}
		}
		g = &groupRow{name: c.Name, owner: string(c.Owner), open: c.Open, created: t, updated: t, dissolv: nullTime,
			version: 1, dirty: true, members: map[string]memberRow{}, origMembers: map[string]memberRow{}}
		a.groups[id] = g
		for _, u := range c.Members {
			if u != c.Owner {
				a.admit(gid, g, string(u), domain.RoleMember, t)
			}
		}
		a.admit(gid, g, string(c.Owner), domain.RoleOwner, t)
		return nil
	}
	if err := a.follow("group", id, g.version, v); err != nil {
		return err
	}
	g.version, g.dirty = v, true
	member := func(u domain.UserID) (memberRow, bool) {
		m, ok := g.members[string(u)]
		return m, ok
	}
	switch e := it.ev.(type) {
	case domain.GroupCreated:
		return a.quarantine("group %s already exists", id)
	case domain.MemberAdded, domain.MemberJoined:
		u := joiner(e)
		if _, ok := member(u); ok || !u.Valid() {
			return a.quarantine("%s cannot join %s: already a member or malformed", u, id)
		}
		a.admit(gid, g, string(u), domain.RoleMember, t)
	case domain.MemberLeft, domain.MemberKicked:
		u := leaver(e)
		m, ok := member(u)
		if !ok {
			return a.quarantine("%s is not a member of %s", u, id)
		}
		delete(g.members, string(u))
		a.periods[periodKey{id, string(u), m.from}] = periodEnd{to: a.lastSeq(gid)}
	case domain.MemberRoleChanged:
		m, ok := member(e.User)
		if !ok || readmodel.RoleName(e.Role) == "" {
			return a.quarantine("role %v for %s in %s: not a member or unknown role", e.Role, e.User, id)
		}
		m.role = e.Role
		g.members[string(e.User)] = m
	case domain.GroupRenamed:
		if !fitsText(e.Name, 255) {
			return a.quarantine("group name does not fit its column")
		}
		g.name = e.Name
	case domain.MemberMuted:
		m, ok := member(e.User)
		if !ok {
			return a.quarantine("%s is not a member of %s", e.User, id)
		}
		if !fitsDatetime(e.Until) {
			return a.quarantine("mute of %s in %s until %d ms, a time beyond the DATETIME column", e.User, id, e.Until.UnixMilli())
		}
		m.muted, m.mutedUntil = true, nullTime
		if !e.Until.IsZero() {
			m.mutedUntil = msOf(e.Until)
		}
		g.members[string(e.User)] = m
	case domain.MemberUnmuted:
		m, ok := member(e.User)
		if !ok {
			return a.quarantine("%s is not a member of %s", e.User, id)
		}
		m.muted, m.mutedUntil = false, nullTime
		g.members[string(e.User)] = m
	case domain.GroupHistoryVisibilityChanged:
		g.historyVisible = e.Visible
	case domain.MemberUnbanned:
		// The ban list lives in the group aggregate only (the gateway reads
		// it from the log); the read model just follows the version.
	case domain.GroupDissolved:
		if g.dissolv != nullTime {
			return a.quarantine("group %s is already dissolved", id)
		}
		g.dissolv = t
	}
	g.updated = t
	return nil
}

func joiner(e domain.Event) domain.UserID {
	if x, ok := e.(domain.MemberAdded); ok {
		return x.User
	}
	return e.(domain.MemberJoined).User
}

func leaver(e domain.Event) domain.UserID {
	if x, ok := e.(domain.MemberLeft); ok {
		return x.User
	}
	return e.(domain.MemberKicked).User
}

// admit makes user a member, opens a membership period at the
// conversation's last seq (at 0 while the group's history is visible to new
// members) and puts the group's conversation in the user's list, with
// everything sent before the join counted as read. The list shows the
// conversation's last message only if the member may read it.
func (a *applier) admit(gid domain.GroupID, g *groupRow, user string, role domain.Role, t ms) {
	last := a.lastSeq(gid)
	var from uint64
	if !g.historyVisible {
		from = last
	}
	g.members[user] = memberRow{role: role, mutedUntil: nullTime, joined: t, from: from}
	a.periods[periodKey{string(gid), user, from}] = periodEnd{open: true}
	conv := string(domain.GroupConversation(gid))
	var preview *convRow
	if g.historyVisible {
		preview = a.convs[conv]
	}
	a.touchUC(user, conv, preview, last, t)
}

// lastSeq returns the last seq of group gid's conversation at the current
// event: the group and its conversation share a partition, so the batch
// sees them in log order.
func (a *applier) lastSeq(gid domain.GroupID) uint64 {
	if c := a.convs[string(domain.GroupConversation(gid))]; c != nil {
		return c.lastSeq
	}
	return 0
}

// writePeriods writes the membership periods the batch opened or closed.
// A period opened and closed at the same seq is written like any other; it
// covers no message.
func (a *applier) writePeriods(ctx context.Context) error {
	w := a.multi("INSERT INTO "+a.t.periods+" (group_id, user_id, from_seq, to_seq) VALUES ",
		" ON DUPLICATE KEY UPDATE to_seq = VALUES(to_seq)", 4)
	return writeRows(ctx, a.tx, w, a.periods, func(x, y periodKey) int {
		return cmp.Or(cmp.Compare(x.group, y.group), cmp.Compare(x.user, y.user), cmp.Compare(x.from, y.from))
	}, func(k periodKey, e periodEnd) []any {
		var to any
		if !e.open {
			to = e.to
		}
		return []any{k.group, k.user, k.from, to}
	})
}

func (a *applier) writeGroups(ctx context.Context) error {
	if len(a.groups) == 0 {
		return nil
	}
	groups := a.multi("INSERT INTO "+a.t.groups+" (group_id, name, owner_id, is_open, history_visible, member_count, created_at, updated_at, dissolved_at, version) VALUES ",
		" ON DUPLICATE KEY UPDATE name = VALUES(name), owner_id = VALUES(owner_id), is_open = VALUES(is_open), history_visible = VALUES(history_visible),"+
			" member_count = VALUES(member_count), updated_at = VALUES(updated_at), dissolved_at = VALUES(dissolved_at), version = VALUES(version)", 10)
	members := a.multi("INSERT INTO "+a.t.members+" (group_id, user_id, role, muted, muted_until, joined_at) VALUES ",
		" ON DUPLICATE KEY UPDATE role = VALUES(role), muted = VALUES(muted), muted_until = VALUES(muted_until), joined_at = VALUES(joined_at)", 6)
	var gone [][]any
	for _, id := range sortedKeys(a.groups, cmpString) {
		g := a.groups[id]
		if g == nil || !g.dirty {
			continue
		}
		if err := groups.add(ctx, a.tx, id, g.name, g.owner, g.open, g.historyVisible, len(g.members), g.created.sql(), g.updated.sql(), g.dissolv.sql(), g.version); err != nil {
			return err
		}
		for _, u := range sortedKeys(g.members, cmpString) {
			m := g.members[u]
			if o, ok := g.origMembers[u]; ok && o == m {
				continue
			}
			if err := members.add(ctx, a.tx, id, u, readmodel.RoleName(m.role), m.muted, m.mutedUntil.sql(), m.joined.sql()); err != nil {
				return err
			}
		}
		for _, u := range sortedKeys(g.origMembers, cmpString) {
			if _, ok := g.members[u]; !ok {
				gone = append(gone, []any{id, u})
			}
		}
	}
	if err := groups.flush(ctx, a.tx); err != nil {
		return err
	}
	if err := a.deleteKeys(ctx, a.t.members, []string{"group_id", "user_id"}, gone); err != nil {
		return err
	}
	return members.flush(ctx, a.tx)
}
