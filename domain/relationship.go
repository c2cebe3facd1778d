package domain

import "time"

// Relationship is the contacts aggregate of an unordered pair of users
// ("r/<ulid-a>.<ulid-b>"): friendship, a pending friend request and the block
// each side may hold against the other. It shares its partition key with the
// pair's direct conversation, so a block and the messages it forbids are
// totally ordered.
//
// A block ends the friendship and drops any pending request between the pair:
// UserBlocked alone says so, Apply carries it out, and projectors must do the
// same. Unblocking restores neither.
//
// A declined request starts a cooldown for its sender: asking again before
// it ends is ERateLimited. The cooldown is FriendRequestCooldown after the
// first decline and doubles with every further decline in a row of the same
// sender's requests, up to MaxFriendRequestCooldown; an accepted request
// ends the series.
type Relationship struct {
	users       [2]UserID // ordered: users[0] < users[1]
	version     uint64
	friends     bool
	pendingFrom UserID  // sender of the pending request, "" if none
	blocked     [2]bool // blocked[i]: users[i] blocks the other

	declinedFrom UserID    // sender of the last declined request, "" if none
	declinedAt   time.Time // when it was declined (zero: before times were recorded)
	declines     int       // declines in a row of declinedFrom's requests
}

// The friend-request cooldown after a decline (see Relationship).
const (
	FriendRequestCooldown    = 24 * time.Hour
	MaxFriendRequestCooldown = 30 * 24 * time.Hour
)

// requestCooldown returns the cooldown after n declines in a row (n >= 1).
func requestCooldown(n int) time.Duration {
	d := FriendRequestCooldown
	for i := 1; i < n && d < MaxFriendRequestCooldown; i++ {
		d *= 2
	}
	return min(d, MaxFriendRequestCooldown)
}

// RelationshipCommand is a command for the Relationship aggregate:
// RequestFriend, AcceptFriend, DeclineFriend, RemoveFriend, Block or Unblock.
type RelationshipCommand interface{ relationshipCommand() }

// RequestFriend asks To to become From's friend.
type RequestFriend struct {
	From, To UserID
	Message  string
}

// AcceptFriend accepts the pending request; By is its recipient.
type AcceptFriend struct{ By UserID }

// DeclineFriend declines the pending request; By is its recipient.
type DeclineFriend struct{ By UserID }

// RemoveFriend ends the friendship; By is either friend.
type RemoveFriend struct{ By UserID }

// Block makes By refuse messages and requests from the other user.
type Block struct{ By UserID }

// Unblock lifts By's block.
type Unblock struct{ By UserID }

func (RequestFriend) relationshipCommand() {}
func (AcceptFriend) relationshipCommand()  {}
func (DeclineFriend) relationshipCommand() {}
func (RemoveFriend) relationshipCommand()  {}
func (Block) relationshipCommand()         {}
func (Unblock) relationshipCommand()       {}

// NewRelationship returns the empty relationship of a and b, in either order.
// It returns an EInvalid error for a malformed id or a == b.
func NewRelationship(a, b UserID) (*Relationship, error) {
	if err := checkUser("user", a); err != nil {
		return nil, err
	}
	if err := checkUser("user", b); err != nil {
		return nil, err
	}
	if a == b {
		return nil, Errorf(EInvalid, "domain: relationship of %s with itself", a)
	}
	return newRelationship(a, b), nil
}

func newRelationship(a, b UserID) *Relationship {
	if b < a {
		a, b = b, a
	}
	return &Relationship{users: [2]UserID{a, b}}
}

// RebuildRelationship replays the events of the relationship of a and b (in
// either order), as read from the log. It trusts the log: it only fails, with
// EInvalid, on an event that does not belong to this aggregate.
func RebuildRelationship(a, b UserID, events []Event) (*Relationship, error) {
	r := newRelationship(a, b)
	if err := applyAll(r, events); err != nil {
		return nil, err
	}
	return r, nil
}

// Users returns the pair, ordered.
func (r *Relationship) Users() (UserID, UserID) { return r.users[0], r.users[1] }

// AggregateID returns "r/<ulid-a>.<ulid-b>".
func (r *Relationship) AggregateID() string { return RelationshipID(r.users[0], r.users[1]) }

// PartitionKey returns PairKey of the pair, shared with their direct
// conversation.
func (r *Relationship) PartitionKey() string { return PairKey(r.users[0], r.users[1]) }

// Conversation returns the pair's direct conversation.
func (r *Relationship) Conversation() ConversationID {
	return DirectConversation(r.users[0], r.users[1])
}

// Version returns the number of events applied.
func (r *Relationship) Version() uint64 { return r.version }

// Friends reports whether the pair are friends.
func (r *Relationship) Friends() bool { return r.friends }

// PendingFrom returns the sender of the pending friend request, if any.
func (r *Relationship) PendingFrom() (UserID, bool) { return r.pendingFrom, r.pendingFrom != "" }

// Blocked reports whether by blocks the other user.
func (r *Relationship) Blocked(by UserID) bool {
	i := r.index(by)
	return i >= 0 && r.blocked[i]
}

// CanMessage returns nil if sender may message the other user. It returns
// EForbidden if sender is not one of the pair and EBlocked if either user
// blocks the other: a blocked user cannot message the blocker, and the blocker
// cannot message the user they block until they unblock. Friendship is not
// required.
func (r *Relationship) CanMessage(sender UserID) error {
	i := r.index(sender)
	switch {
	case i < 0:
		return Errorf(EForbidden, "domain: %s is not in %s", sender, r.AggregateID())
	case r.blocked[1-i]:
		return Errorf(EBlocked, "domain: %s is blocked by %s", sender, r.users[1-i])
	case r.blocked[i]:
		return Errorf(EBlocked, "domain: %s blocks %s; unblock first", sender, r.users[1-i])
	}
	return nil
}

// index returns the position of u in the pair, or -1.
func (r *Relationship) index(u UserID) int {
	switch u {
	case r.users[0]:
		return 0
	case r.users[1]:
		return 1
	}
	return -1
}

// Decide returns the events that carry out cmd. Only the two users act
// (EForbidden otherwise). The errors by command:
//
//   - RequestFriend: EInvalid for a request to oneself or a malformed message,
//     ETooLarge for a message over MaxTextBytes, EBlocked if either user blocks
//     the other, EExists if already friends or From's request is pending,
//     ERateLimited (with RetryAfter) while From's cooldown after a declined
//     request runs. If
//     To's request to From is pending, the request accepts it: Decide returns
//     FriendRequestAccepted, as if From had sent AcceptFriend.
//   - AcceptFriend, DeclineFriend: ENoRequest if no request is pending (so a
//     request is accepted at most once), EForbidden if By sent it.
//   - RemoveFriend: ENotFound if the pair are not friends.
//   - Block: EExists if By already blocks the other. The single UserBlocked
//     also ends the friendship and drops a pending request.
//   - Unblock: ENotFound if By does not block the other.
func (r *Relationship) Decide(cmd RelationshipCommand, now time.Time, p Policy) ([]Event, error) {
	switch c := cmd.(type) {
	case RequestFriend:
		return r.decideRequest(c, now, p)
	case AcceptFriend:
		from, err := r.pendingTo(c.By)
		if err != nil {
			return nil, err
		}
		return []Event{FriendRequestAccepted{From: from, By: c.By}}, nil
	case DeclineFriend:
		from, err := r.pendingTo(c.By)
		if err != nil {
			return nil, err
		}
		return []Event{FriendRequestDeclined{From: from, By: c.By, At: now.UTC().Truncate(time.Millisecond)}}, nil
	case RemoveFriend:
		other, err := r.other(c.By)
		if err != nil {
			return nil, err
		}
		if !r.friends {
			return nil, Errorf(ENotFound, "domain: %s and %s are not friends", c.By, other)
		}
		return []Event{FriendRemoved{By: c.By, Other: other}}, nil
	case Block:
		other, err := r.other(c.By)
		if err != nil {
			return nil, err
		}
		if r.Blocked(c.By) {
			return nil, Errorf(EExists, "domain: %s already blocks %s", c.By, other)
		}
		return []Event{UserBlocked{Blocker: c.By, Blocked: other}}, nil
	case Unblock:
		other, err := r.other(c.By)
		if err != nil {
			return nil, err
		}
		if !r.Blocked(c.By) {
			return nil, Errorf(ENotFound, "domain: %s does not block %s", c.By, other)
		}
		return []Event{UserUnblocked{Blocker: c.By, Blocked: other}}, nil
	}
	return nil, unknownCommand(r.AggregateID(), cmd)
}

func (r *Relationship) decideRequest(c RequestFriend, now time.Time, p Policy) ([]Event, error) {
	to, err := r.other(c.From)
	if err != nil {
		return nil, err
	}
	if c.To != to {
		if c.To == c.From {
			return nil, Errorf(EInvalid, "domain: %s cannot befriend themselves", c.From)
		}
		return nil, Errorf(EForbidden, "domain: %s is not in %s", c.To, r.AggregateID())
	}
	if err := checkText("friend request message", c.Message, p.MaxTextBytes); err != nil {
		return nil, err
	}
	if err := r.CanMessage(c.From); err != nil {
		return nil, err
	}
	switch r.pendingFrom {
	case c.From:
		return nil, Errorf(EExists, "domain: %s already asked %s", c.From, to)
	case to:
		return []Event{FriendRequestAccepted{From: to, By: c.From}}, nil
	}
	if r.friends {
		return nil, Errorf(EExists, "domain: %s and %s are already friends", c.From, to)
	}
	if r.declinedFrom == c.From && !r.declinedAt.IsZero() {
		if wait := r.declinedAt.Add(requestCooldown(r.declines)).Sub(now); wait > 0 {
			err := Errorf(ERateLimited, "domain: %s declined %s's request; ask again in %v", to, c.From, wait.Round(time.Second))
			err.RetryAfter = wait
			return nil, err
		}
	}
	return []Event{FriendRequested{From: c.From, To: to, Message: c.Message}}, nil
}

// other returns the user of the pair that is not u, or EForbidden if u is not
// in the pair.
func (r *Relationship) other(u UserID) (UserID, error) {
	i := r.index(u)
	if i < 0 {
		return "", Errorf(EForbidden, "domain: %s is not in %s", u, r.AggregateID())
	}
	return r.users[1-i], nil
}

// pendingTo returns the sender of the request pending to recipient:
// EForbidden if recipient is not in the pair or sent the request, ENoRequest
// if none is pending.
func (r *Relationship) pendingTo(recipient UserID) (UserID, error) {
	if _, err := r.other(recipient); err != nil {
		return "", err
	}
	switch r.pendingFrom {
	case "":
		return "", Errorf(ENoRequest, "domain: no friend request pending for %s", recipient)
	case recipient:
		return "", Errorf(EForbidden, "domain: %s cannot answer their own request", recipient)
	}
	return r.pendingFrom, nil
}

// Apply applies one event. It returns an EInvalid error for an event of
// another aggregate kind or one naming a user outside the pair.
func (r *Relationship) Apply(e Event) error {
	in := func(us ...UserID) bool {
		for _, u := range us {
			if r.index(u) < 0 {
				return false
			}
		}
		return true
	}
	switch e := e.(type) {
	case FriendRequested:
		if !in(e.From, e.To) || e.From == e.To {
			return foreign(r.AggregateID(), e)
		}
		r.pendingFrom = e.From
	case FriendRequestAccepted:
		if !in(e.From, e.By) {
			return foreign(r.AggregateID(), e)
		}
		r.friends, r.pendingFrom = true, ""
		r.declinedFrom, r.declinedAt, r.declines = "", time.Time{}, 0
	case FriendRequestDeclined:
		if !in(e.From, e.By) {
			return foreign(r.AggregateID(), e)
		}
		r.pendingFrom = ""
		if r.declinedFrom != e.From {
			r.declinedFrom, r.declines = e.From, 0
		}
		r.declinedAt, r.declines = e.At, r.declines+1
	case FriendRemoved:
		if !in(e.By, e.Other) {
			return foreign(r.AggregateID(), e)
		}
		r.friends = false
	case UserBlocked:
		if !in(e.Blocker, e.Blocked) || e.Blocker == e.Blocked {
			return foreign(r.AggregateID(), e)
		}
		r.blocked[r.index(e.Blocker)] = true
		r.friends, r.pendingFrom = false, ""
	case UserUnblocked:
		if !in(e.Blocker, e.Blocked) || e.Blocker == e.Blocked {
			return foreign(r.AggregateID(), e)
		}
		r.blocked[r.index(e.Blocker)] = false
	default:
		return foreign(r.AggregateID(), e)
	}
	r.version++
	return nil
}
