package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"strings"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// pairKey is a relationship's pair of user ids, a < b.
type pairKey struct{ a, b string }

// pairOf parses a relationship aggregate id "r/<ulid-a>.<ulid-b>".
func pairOf(agg string) (pairKey, bool) {
	rest, ok := strings.CutPrefix(agg, "r/")
	if !ok {
		return pairKey{}, false
	}
	x, y, ok := strings.Cut(rest, ".")
	if !ok || !domain.ValidULID(x) || !domain.ValidULID(y) || x >= y {
		return pairKey{}, false
	}
	return pairKey{"u/" + x, "u/" + y}, true
}

// requestRow is a friend_requests row.
type requestRow struct {
	message, status  string
	created, updated ms
	version          uint64
}

// pairState is what the read model holds about a relationship: the friend
// request rows in both directions, the friendship and the blocks, as loaded
// (orig*) and as the batch leaves them. Index 0 is a -> b, 1 is b -> a.
type pairState struct {
	req, origReq         [2]*requestRow
	friends, origFriends ms // since; nullTime: not friends
	block, origBlock     [2]ms
}

func newPairState() *pairState {
	return &pairState{
		friends: nullTime, origFriends: nullTime,
		block: [2]ms{nullTime, nullTime}, origBlock: [2]ms{nullTime, nullTime},
	}
}

// dir returns the index of the direction from -> other.
func (k pairKey) dir(from domain.UserID) int {
	if string(from) == k.a {
		return 0
	}
	return 1
}

// in reports whether every user is one of the pair.
func (k pairKey) in(users ...domain.UserID) bool {
	for _, u := range users {
		if string(u) != k.a && string(u) != k.b {
			return false
		}
	}
	return true
}

func (a *applier) loadPairs(ctx context.Context) error {
	if len(a.pairs) == 0 {
		return nil
	}
	both := make([][]any, 0, 2*len(a.pairs))
	one := make([][]any, 0, len(a.pairs))
	for k := range a.pairs {
		both = append(both, []any{k.a, k.b}, []any{k.b, k.a})
		one = append(one, []any{k.a, k.b})
	}
	// state returns the pair of (x, y) and the direction x -> y.
	state := func(x, y string) (*pairState, int) {
		if x < y {
			return a.pairs[pairKey{x, y}], 0
		}
		return a.pairs[pairKey{y, x}], 1
	}
	err := a.queryKeys(ctx, both,
		orList("SELECT from_user, to_user, message, status, created_at, updated_at, version FROM "+a.t.requests+" WHERE", "from_user", "to_user"),
		func(rows *sql.Rows) error {
			var from, to string
			r := &requestRow{}
			if err := rows.Scan(&from, &to, &r.message, &r.status, r.created.scan(), r.updated.scan(), &r.version); err != nil {
				return err
			}
			if s, i := state(from, to); s != nil {
				s.req[i], s.origReq[i] = r, r
			}
			return nil
		})
	if err != nil {
		return err
	}
	err = a.queryKeys(ctx, one,
		orList("SELECT user_id, friend_id, since FROM "+a.t.friendships+" WHERE", "user_id", "friend_id"),
		func(rows *sql.Rows) error {
			var x, y string
			var since ms
			if err := rows.Scan(&x, &y, since.scan()); err != nil {
				return err
			}
			if s, _ := state(x, y); s != nil {
				s.friends, s.origFriends = since, since
			}
			return nil
		})
	if err != nil {
		return err
	}
	return a.queryKeys(ctx, both,
		orList("SELECT blocker, blocked, blocked_at FROM "+a.t.blocks+" WHERE", "blocker", "blocked"),
		func(rows *sql.Rows) error {
			var x, y string
			var at ms
			if err := rows.Scan(&x, &y, at.scan()); err != nil {
				return err
			}
			if s, i := state(x, y); s != nil {
				s.block[i], s.origBlock[i] = at, at
			}
			return nil
		})
}

// applyContact applies an event of a relationship aggregate. Rows change
// copy-on-write, so the loaded state stays for the final comparison.
func (a *applier) applyContact(it *item) error {
	agg, v, t := it.meta.Aggregate, it.meta.Version, a.at()
	k, ok := pairOf(agg)
	if !ok {
		return a.quarantine("%s is not a relationship aggregate", agg)
	}
	s := a.pairs[k]
	// update returns a copy of request row i to change, or nil with an
	// error if the event does not follow the row's version.
	update := func(i int) (*requestRow, error) {
		r := s.req[i]
		if r == nil {
			return nil, nil
		}
		if v <= r.version {
			return nil, a.follow("friend request of", agg, r.version, v)
		}
		c := *r
		c.updated, c.version = t, v
		s.req[i] = &c
		return &c, nil
	}
	switch e := it.ev.(type) {
	case domain.FriendRequested:
		if !k.in(e.From, e.To) || e.From == e.To {
			return a.quarantine("friend request %s -> %s outside %s", e.From, e.To, agg)
		}
		if len(e.Message) > 65535 || !fitsText(e.Message, 65535) {
			return a.quarantine("friend request message does not fit its column")
		}
		i := k.dir(e.From)
		if _, err := update(i); err != nil {
			return err
		}
		s.req[i] = &requestRow{message: e.Message, status: readmodel.RequestPending, created: t, updated: t, version: v}
	case domain.FriendRequestAccepted, domain.FriendRequestDeclined:
		from, by, status := answer(e)
		if !k.in(from, by) || from == by {
			return a.quarantine("answer to a friend request %s -> %s outside %s", from, by, agg)
		}
		i := k.dir(from)
		if r := s.req[i]; r == nil || r.status != readmodel.RequestPending {
			return a.quarantine("no friend request from %s to %s is pending", from, by)
		}
		r, err := update(i)
		if err != nil {
			return err
		}
		r.status = status
		if status == readmodel.RequestAccepted && s.friends == nullTime {
			s.friends = t
		}
	case domain.FriendRemoved:
		if !k.in(e.By, e.Other) || e.By == e.Other {
			return a.quarantine("friend removal %s -> %s outside %s", e.By, e.Other, agg)
		}
		if s.friends == nullTime {
			return a.quarantine("%s and %s are not friends", e.By, e.Other)
		}
		s.friends = nullTime
	case domain.UserBlocked:
		if !k.in(e.Blocker, e.Blocked) || e.Blocker == e.Blocked {
			return a.quarantine("block %s -> %s outside %s", e.Blocker, e.Blocked, agg)
		}
		i := k.dir(e.Blocker)
		if s.block[i] != nullTime {
			return a.quarantine("%s already blocks %s", e.Blocker, e.Blocked)
		}
		// A block also ends the friendship and drops a pending request.
		s.block[i], s.friends = t, nullTime
		for j := range s.req {
			if r := s.req[j]; r != nil && r.status == readmodel.RequestPending {
				if v <= r.version {
					return a.follow("friend request of", agg, r.version, v)
				}
				s.req[j] = nil
			}
		}
	case domain.UserUnblocked:
		if !k.in(e.Blocker, e.Blocked) || e.Blocker == e.Blocked {
			return a.quarantine("unblock %s -> %s outside %s", e.Blocker, e.Blocked, agg)
		}
		i := k.dir(e.Blocker)
		if s.block[i] == nullTime {
			return a.quarantine("%s does not block %s", e.Blocker, e.Blocked)
		}
		s.block[i] = nullTime
	}
	return nil
}

// answer returns the request's sender, the recipient answering it and the
// status the answer gives it.
func answer(e domain.Event) (from, by domain.UserID, status string) {
	if x, ok := e.(domain.FriendRequestAccepted); ok {
		return x.From, x.By, readmodel.RequestAccepted
	}
	x := e.(domain.FriendRequestDeclined)
	return x.From, x.By, readmodel.RequestDeclined
}

func (a *applier) writePairs(ctx context.Context) error {
	if len(a.pairs) == 0 {
		return nil
	}
	keys := sortedKeys(a.pairs, func(x, y pairKey) int { return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b)) })
	reqs := a.multi("INSERT INTO "+a.t.requests+" (from_user, to_user, message, status, created_at, updated_at, version) VALUES ",
		" ON DUPLICATE KEY UPDATE message = VALUES(message), status = VALUES(status), created_at = VALUES(created_at),"+
			" updated_at = VALUES(updated_at), version = VALUES(version)", 7)
	friends := a.multi("INSERT INTO "+a.t.friendships+" (user_id, friend_id, since) VALUES ", " ON DUPLICATE KEY UPDATE since = VALUES(since)", 3)
	blocks := a.multi("INSERT INTO "+a.t.blocks+" (blocker, blocked, blocked_at) VALUES ", " ON DUPLICATE KEY UPDATE blocked_at = VALUES(blocked_at)", 3)
	var delReqs, delFriends, delBlocks [][]any
	for _, k := range keys {
		s := a.pairs[k]
		for i, from, to := 0, k.a, k.b; i < 2; i, from, to = i+1, to, from {
			switch r, o := s.req[i], s.origReq[i]; {
			case r == o:
			case r == nil:
				delReqs = append(delReqs, []any{from, to})
			case o == nil || *r != *o:
				if err := reqs.add(ctx, a.tx, from, to, r.message, r.status, r.created.sql(), r.updated.sql(), r.version); err != nil {
					return err
				}
			}
			switch b, o := s.block[i], s.origBlock[i]; b {
			case o:
			case nullTime:
				delBlocks = append(delBlocks, []any{from, to})
			default:
				if err := blocks.add(ctx, a.tx, from, to, b.sql()); err != nil {
					return err
				}
			}
		}
		switch s.friends {
		case s.origFriends:
		case nullTime:
			delFriends = append(delFriends, []any{k.a, k.b}, []any{k.b, k.a})
		default:
			if err := friends.add(ctx, a.tx, k.a, k.b, s.friends.sql()); err != nil {
				return err
			}
			if err := friends.add(ctx, a.tx, k.b, k.a, s.friends.sql()); err != nil {
				return err
			}
		}
	}
	for _, w := range []*multiRow{reqs, friends, blocks} {
		if err := w.flush(ctx, a.tx); err != nil {
			return err
		}
	}
	if err := a.deleteKeys(ctx, a.t.requests, []string{"from_user", "to_user"}, delReqs); err != nil {
		return err
	}
	if err := a.deleteKeys(ctx, a.t.friendships, []string{"user_id", "friend_id"}, delFriends); err != nil {
		return err
	}
	return a.deleteKeys(ctx, a.t.blocks, []string{"blocker", "blocked"}, delBlocks)
}
