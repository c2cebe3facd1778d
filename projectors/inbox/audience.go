package inbox

import (
	"maps"

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
		domain.GroupRenamed, domain.MemberMuted, domain.MemberUnmuted, domain.GroupDissolved, domain.GroupHistoryVisibilityChanged:
		return domain.GroupID(agg), true
	}
	return "", false
}

// members is a set of users.
type members map[domain.UserID]struct{}

// group is a batch's view of one group's member set: as read at the batch's
// checkpoint (initial) and as moved through the batch's events (current).
type group struct {
	initial, current members
	dissolved        bool
}

// membership is a batch's view of the groups it touches. It is built from
// the member sets read at the checkpoint and moved forward, event by event,
// by audience; changes reports the net difference to write back.
type membership map[domain.GroupID]*group

// load sets the member set of g as read at the checkpoint.
func (m membership) load(g domain.GroupID, users []string) {
	initial := make(members, len(users))
	for _, u := range users {
		initial[domain.UserID(u)] = struct{}{}
	}
	m[g] = &group{initial: initial, current: maps.Clone(initial)}
}

// each calls to for every current member of g.
func (m membership) each(g domain.GroupID, to func(domain.UserID)) {
	if v := m[g]; v != nil {
		for u := range v.current {
			to(u)
		}
	}
}

func (m membership) add(g domain.GroupID, users ...domain.UserID) {
	if v := m[g]; v != nil {
		for _, u := range users {
			v.current[u] = struct{}{}
		}
	}
}

func (m membership) remove(g domain.GroupID, u domain.UserID) {
	if v := m[g]; v != nil {
		delete(v.current, u)
	}
}

// audience calls to for every user that must receive ev (see the package
// comment), possibly more than once for one user, and moves the membership
// past ev. agg is the event's aggregate. Membership changes apply the rules
// of domain.Group.Apply.
func (m membership) audience(agg string, ev domain.Event, to func(domain.UserID)) {
	switch e := ev.(type) {
	case domain.MessageSent:
		conversation(m, e.Conversation, to)
	case domain.MessageRecalled, domain.MessageEdited:
		conversation(m, domain.ConversationID(agg), to)
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
	case domain.MemberAdded:
		g := domain.GroupID(agg)
		m.add(g, e.User)
		m.each(g, to)
	case domain.MemberJoined:
		g := domain.GroupID(agg)
		m.add(g, e.User)
		m.each(g, to)
	case domain.MemberLeft:
		g := domain.GroupID(agg)
		m.each(g, to)
		to(e.User)
		m.remove(g, e.User)
	case domain.MemberKicked:
		g := domain.GroupID(agg)
		m.each(g, to)
		to(e.User)
		m.remove(g, e.User)
	case domain.MemberRoleChanged:
		m.each(domain.GroupID(agg), to)
		to(e.User)
	case domain.MemberMuted:
		m.each(domain.GroupID(agg), to)
		to(e.User)
	case domain.MemberUnmuted:
		m.each(domain.GroupID(agg), to)
		to(e.User)
	case domain.GroupRenamed, domain.GroupHistoryVisibilityChanged:
		m.each(domain.GroupID(agg), to)
	case domain.GroupDissolved:
		g := domain.GroupID(agg)
		m.each(g, to)
		if v := m[g]; v != nil {
			clear(v.current)
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

// change is the net change of one group's member set over a batch.
type change struct {
	group          domain.GroupID
	drop           bool // delete the set (the group was dissolved)
	added, removed []domain.UserID
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
		c := change{group: g}
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
		if len(c.added)+len(c.removed) > 0 {
			out = append(out, c)
		}
	}
	return out
}
