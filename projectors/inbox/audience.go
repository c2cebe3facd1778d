package inbox

import (
	"maps"
	"strconv"

	"github.com/mpim/mpim/domain"
)

// groupOf returns the group whose membership decides ev's audience, if any.
// agg is the event's aggregate.
func groupOf(agg string, ev domain.Event) (domain.GroupID, bool) {
	switch e := ev.(type) {
	case domain.MessageSent:
		return e.Conversation.Group()
	case domain.MessageRecalled, domain.MessageEdited:
		return domain.ConversationID(agg).Group()
	case domain.GroupCreated:
		return e.Group, true
	case domain.MemberAdded, domain.MemberJoined, domain.MemberLeft, domain.MemberKicked, domain.MemberRoleChanged,
		domain.GroupRenamed, domain.MemberMuted, domain.MemberUnmuted, domain.MemberUnbanned, domain.GroupDissolved, domain.GroupHistoryVisibilityChanged:
		return domain.GroupID(agg), true
	}
	return "", false
}

// members is a set of users.
type members map[domain.UserID]struct{}

// group is a batch's view of one group's member set: as read at the batch's
// checkpoint (initial) and as moved through the batch's events (current);
// and of its history state: the conversation's last seq, whether the
// history is visible to new members, and the seq each member's membership
// began at (a member without one, from before it was recorded, began at 0).
// hist holds the history fields the batch changed ("" deletes a field).
type group struct {
	initial, current members
	dissolved        bool
	last             uint64
	visible          bool
	from             map[domain.UserID]uint64
	hist             map[string]string
}

// Fields of a group's history hash.
const (
	histLast    = "last"
	histVisible = "visible"
	histFrom    = "from:" // + user id
)

// set records a changed history field.
func (v *group) set(field, value string) { v.hist[field] = value }

// admit records that u's membership begins now.
func (v *group) admit(u domain.UserID) {
	var from uint64
	if !v.visible {
		from = v.last
	}
	v.from[u] = from
	v.set(histFrom+string(u), strconv.FormatUint(from, 10))
}

// membership is a batch's view of the groups it touches. It is built from
// the member sets read at the checkpoint and moved forward, event by event,
// by audience; changes reports the net difference to write back.
type membership map[domain.GroupID]*group

// load sets the member set and the history hash of g as read at the
// checkpoint.
func (m membership) load(g domain.GroupID, users []string, hist map[string]string) {
	initial := make(members, len(users))
	for _, u := range users {
		initial[domain.UserID(u)] = struct{}{}
	}
	v := &group{initial: initial, current: maps.Clone(initial), from: map[domain.UserID]uint64{}, hist: map[string]string{}}
	for f, val := range hist {
		n, _ := strconv.ParseUint(val, 10, 64)
		switch {
		case f == histLast:
			v.last = n
		case f == histVisible:
			v.visible = val == "1"
		case len(f) > len(histFrom) && f[:len(histFrom)] == histFrom:
			v.from[domain.UserID(f[len(histFrom):])] = n
		}
	}
	m[g] = v
}

// each calls to for every current member of g.
func (m membership) each(g domain.GroupID, to func(domain.UserID)) {
	if v := m[g]; v != nil {
		for u := range v.current {
			to(u)
		}
	}
}

// eachAnd calls to for every member of g, then for u: the audience of a
// change to one member is the group and that member, who may not be (or no
// longer be) one of them.
func (m membership) eachAnd(g domain.GroupID, u domain.UserID, to func(domain.UserID)) {
	m.each(g, to)
	to(u)
}

// add makes users members of g whose membership begins now, unless they
// are members already.
func (m membership) add(g domain.GroupID, users ...domain.UserID) {
	if v := m[g]; v != nil {
		for _, u := range users {
			if _, ok := v.current[u]; !ok {
				v.current[u] = struct{}{}
				v.admit(u)
			}
		}
	}
}

func (m membership) remove(g domain.GroupID, u domain.UserID) {
	if v := m[g]; v != nil {
		delete(v.current, u)
		delete(v.from, u)
		v.set(histFrom+string(u), "")
	}
}

// sent moves g's conversation's last seq to seq.
func (m membership) sent(g domain.GroupID, seq uint64) {
	if v := m[g]; v != nil && seq > v.last {
		v.last = seq
		v.set(histLast, strconv.FormatUint(seq, 10))
	}
}

// eachSince calls to for every current member of g whose membership began
// before message seq: a member who joined after it never had it.
func (m membership) eachSince(g domain.GroupID, seq uint64, to func(domain.UserID)) {
	if v := m[g]; v != nil {
		for u := range v.current {
			if v.from[u] < seq {
				to(u)
			}
		}
	}
}

// audience calls to for every user that must receive ev (see the package
// comment), possibly more than once for one user, and moves the membership
// past ev. agg is the event's aggregate. Membership changes apply the rules
// of domain.Group.Apply.
func (m membership) audience(agg string, ev domain.Event, to func(domain.UserID)) {
	switch e := ev.(type) {
	case domain.MessageSent:
		if g, ok := e.Conversation.Group(); ok {
			m.sent(g, e.Seq)
		}
		conversation(m, e.Conversation, to)
	case domain.MessageRecalled:
		changed(m, domain.ConversationID(agg), e.Seq, to)
	case domain.MessageEdited:
		changed(m, domain.ConversationID(agg), e.Seq, to)
	case domain.ConversationRead:
		to(e.User)
		if a, b, ok := e.Conversation.Members(); ok {
			to(a)
			to(b)
		}
	case domain.MessageDeletedForMe:
		to(e.User)
	case domain.FriendRequested:
		to(e.From)
		to(e.To)
	case domain.FriendRequestAccepted:
		to(e.From)
		to(e.By)
	case domain.FriendRequestDeclined:
		to(e.From)
		to(e.By)
	case domain.FriendRemoved:
		to(e.By)
		to(e.Other)
	case domain.UserBlocked:
		to(e.Blocker)
	case domain.UserUnblocked:
		to(e.Blocker)
	case domain.ProfileUpdated:
		to(domain.UserID(agg))
	case domain.GroupCreated:
		if v := m[e.Group]; v != nil {
			clear(v.current)
			v.dissolved = false
		}
		m.add(e.Group, e.Owner)
		m.add(e.Group, e.Members...)
		m.each(e.Group, to)
	case domain.GroupHistoryVisibilityChanged:
		if v := m[domain.GroupID(agg)]; v != nil {
			v.visible = e.Visible
			v.set(histVisible, "0")
			if e.Visible {
				v.set(histVisible, "1")
			}
		}
		m.each(domain.GroupID(agg), to)
	case domain.MemberAdded:
		g := domain.GroupID(agg)
		m.add(g, e.User)
		m.each(g, to)
	case domain.MemberJoined:
		g := domain.GroupID(agg)
		m.add(g, e.User)
		m.each(g, to)
	case domain.MemberLeft:
		m.eachAnd(domain.GroupID(agg), e.User, to)
		m.remove(domain.GroupID(agg), e.User)
	case domain.MemberKicked:
		m.eachAnd(domain.GroupID(agg), e.User, to)
		m.remove(domain.GroupID(agg), e.User)
	case domain.MemberRoleChanged:
		m.eachAnd(domain.GroupID(agg), e.User, to)
	case domain.MemberMuted:
		m.eachAnd(domain.GroupID(agg), e.User, to)
	case domain.MemberUnmuted:
		m.eachAnd(domain.GroupID(agg), e.User, to)
	case domain.MemberUnbanned:
		m.eachAnd(domain.GroupID(agg), e.User, to)
	case domain.GroupRenamed:
		m.each(domain.GroupID(agg), to)
	case domain.GroupDissolved:
		g := domain.GroupID(agg)
		m.each(g, to)
		if v := m[g]; v != nil {
			clear(v.current)
			clear(v.from)
			clear(v.hist)
			v.last, v.visible = 0, false
			v.dissolved = true
		}
	}
}

// conversation calls to for every member of conv: the pair of a direct
// conversation, the current members of a group's.
func conversation(m membership, conv domain.ConversationID, to func(domain.UserID)) {
	if g, ok := conv.Group(); ok {
		m.each(g, to)
		return
	}
	if a, b, ok := conv.Members(); ok {
		to(a)
		to(b)
	}
}

// changed calls to for every member of conv who may see a change
// of message seq: the pair of a direct conversation, the current members of
// a group's whose membership began before the message.
func changed(m membership, conv domain.ConversationID, seq uint64, to func(domain.UserID)) {
	if g, ok := conv.Group(); ok {
		m.eachSince(g, seq, to)
		return
	}
	conversation(m, conv, to)
}

// change is the net change of one group's member set and history hash over
// a batch.
type change struct {
	group          domain.GroupID
	drop           bool // delete the set and the hash (the group was dissolved)
	added, removed []domain.UserID
	hist           map[string]string // fields to set; "" deletes
}

// changes returns the net change of every group whose set changed, in the
// order of groups.
func (m membership) changes(groups []domain.GroupID) []change {
	var out []change
	for _, g := range groups {
		v := m[g]
		if v.dissolved {
			out = append(out, change{group: g, drop: true})
			continue
		}
		c := change{group: g, hist: v.hist}
		for u := range v.current {
			if _, ok := v.initial[u]; !ok {
				c.added = append(c.added, u)
			}
		}
		for u := range v.initial {
			if _, ok := v.current[u]; !ok {
				c.removed = append(c.removed, u)
			}
		}
		if len(c.added)+len(c.removed)+len(c.hist) > 0 {
			out = append(out, c)
		}
	}
	return out
}
