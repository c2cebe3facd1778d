package main

import (
	"database/sql"
	"maps"
	"slices"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/readmodel"
)

// The Redis halves of the deep read-model audit (readmodel_audit_test.go):
// the cache compared with MySQL, and the users' inbox streams compared with
// the acked sends.

// involved returns the users and groups of the acked sends' conversations.
func involved(sent []sentMsg) (users []domain.UserID, groups []domain.GroupID) {
	us, gs := map[domain.UserID]bool{}, map[domain.GroupID]bool{}
	for _, m := range sent {
		for _, u := range m.to {
			us[domain.UserID(u.id)] = true
		}
		if g, ok := domain.ConversationID(m.key.conv).Group(); ok {
			gs[g] = true
		}
	}
	return slices.Sorted(maps.Keys(us)), slices.Sorted(maps.Keys(gs))
}

// auditCache compares the cache keys of every user and group involved with
// the MySQL read model: profiles, friends, the user's groups, a group's
// info and members.
func (c rmConns) auditCache(t *testing.T, a *readModelAudit, sent []sentMsg) {
	t.Helper()
	keys := cachekeys.New(c.tg.prefix)
	users, groups := involved(sent)
	for _, u := range users {
		var username, name, avatar string
		if err := c.db.QueryRowContext(c.ctx, "SELECT username, display_name, avatar_url FROM "+readmodel.Users+" WHERE user_id = ?", u).
			Scan(&username, &name, &avatar); err != nil {
			t.Fatalf("reading user %s: %v", u, err)
		}
		c.compareHash(t, a, keys.Profile(u), map[string]string{
			cachekeys.ProfileUsername: username, cachekeys.ProfileName: name, cachekeys.ProfileAvatar: avatar})
		c.compareSet(t, a, keys.Friends(u), "SELECT friend_id FROM "+readmodel.Friendships+" WHERE user_id = ?", u)
		c.compareSet(t, a, keys.Groups(u), "SELECT group_id FROM "+readmodel.Members+" WHERE user_id = ?", u)
	}
	for _, g := range groups {
		var name, owner string
		var open, dissolved bool
		if err := c.db.QueryRowContext(c.ctx, "SELECT name, owner_id, is_open, dissolved_at IS NOT NULL FROM "+readmodel.Groups+" WHERE group_id = ?", g).
			Scan(&name, &owner, &open, &dissolved); err != nil {
			t.Fatalf("reading group %s: %v", g, err)
		}
		c.compareHash(t, a, keys.GroupInfo(g), map[string]string{
			cachekeys.GroupName: name, cachekeys.GroupOwner: owner, cachekeys.GroupOpen: boolFlag(open), cachekeys.GroupDissolved: boolFlag(dissolved)})
		members := map[string]string{}
		c.query(t, "SELECT user_id, role FROM "+readmodel.Members+" WHERE group_id = ?", func(rs *sql.Rows) error {
			var u, role string
			err := rs.Scan(&u, &role)
			members[u] = role
			return err
		}, g)
		c.compareHash(t, a, keys.Members(g), members)
	}
}

// boolFlag is a boolean as the cache stores it.
func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// compareHash checks that the cache hash key holds exactly want.
func (c rmConns) compareHash(t *testing.T, a *readModelAudit, key string, want map[string]string) {
	t.Helper()
	got, err := c.rdb.HGetAll(c.ctx, key).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	a.cacheChecked++
	if !maps.Equal(got, want) {
		a.problem("cache: %s is %v, MySQL says %v", key, got, want)
	}
}

// compareSet checks that the cache set key holds exactly the values q
// returns.
func (c rmConns) compareSet(t *testing.T, a *readModelAudit, key, q string, args ...any) {
	t.Helper()
	got, err := c.rdb.SMembers(c.ctx, key).Result()
	if err != nil {
		t.Fatalf("SMEMBERS %s: %v", key, err)
	}
	var want []string
	c.query(t, q, func(rs *sql.Rows) error {
		var v string
		err := rs.Scan(&v)
		want = append(want, v)
		return err
	}, args...)
	slices.Sort(got)
	slices.Sort(want)
	a.cacheChecked++
	if !slices.Equal(got, want) {
		a.problem("cache: %s is %v, MySQL says %v", key, got, want)
	}
}

// auditInboxes reads the inbox stream of every user involved: each acked
// send is in the inbox of every member of its conversation, with its seq;
// the first occurrences of a conversation's messages come in seq order; no
// MessageSent entry is one that was never acked. Repeated entries (inbox
// writes are at least once) are counted.
func (c rmConns) auditInboxes(t *testing.T, a *readModelAudit, sent []sentMsg, byID map[string]sentMsg) {
	t.Helper()
	keys := inbox.NewKeys(c.tg.prefix)
	users, _ := involved(sent)
	held := map[domain.UserID]map[string]bool{}
	for _, u := range users {
		msgs, err := c.rdb.XRange(c.ctx, keys.Inbox(u), "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE inbox of %s: %v", u, err)
		}
		seen := map[string]bool{}
		last := map[string]uint64{} // conversation -> seq of the last first occurrence
		for _, msg := range msgs {
			e, err := inbox.DecodeEntry(msg.Values)
			if err != nil {
				a.problem("inbox: %s entry %s: %v", u, msg.ID, err)
				continue
			}
			id := string(e.EventID[:])
			if seen[id] {
				a.inboxDups++
				continue
			}
			seen[id] = true
			m, ok := byID[id]
			switch {
			case !ok && e.Type == "MessageSent":
				a.problem("inbox: %s holds MessageSent %x (seq %d), never acked", u, e.EventID, e.Seq)
			case !ok:
			case e.Seq != m.seq:
				a.problem("inbox: %s holds %s as seq %d, acked as seq %d", u, m.key.clientMsgID, e.Seq, m.seq)
			case e.Seq <= last[m.key.conv]:
				a.problem("inbox: %s holds %s seq %d after seq %d", u, m.key.conv, e.Seq, last[m.key.conv])
			default:
				last[m.key.conv] = e.Seq
			}
		}
		held[u] = seen
	}
	for _, m := range sent {
		for _, u := range m.to {
			a.inboxChecked++
			if !held[domain.UserID(u.id)][m.eventID] {
				a.problem("inbox: %s's inbox lacks %s (%s seq %d)", u.name, m.key.clientMsgID, m.key.conv, m.seq)
			}
		}
	}
}
