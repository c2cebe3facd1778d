package domain

import (
	"cmp"
	"slices"
	"time"
)

// Group is the group aggregate "g/<ulid>": name, openness, members with their
// roles and mutes, and whether it was dissolved. A group's conversation shares
// its partition, so membership changes and messages are totally ordered.
//
// A kick bans: the kicked user is on the group's ban list and can neither
// join nor be added by a plain member until an admin or the owner lifts the
// ban, with UnbanMember or by adding the user themselves.
//
// Ownership cannot be transferred yet: the owner is fixed at creation, cannot
// leave and cannot be given away with SetRole; to go, the owner dissolves the
// group.
type Group struct {
	id        GroupID
	version   uint64
	created   bool
	dissolved bool
	name      string
	owner     UserID
	open      bool
	members   map[UserID]membership
	// historyVisible: members who join get the history from seq 1.
	historyVisible bool
	banned         map[UserID]bool // kicked and not let back yet
}

// membership is a member's state inside the aggregate.
type membership struct {
	role  Role
	muted bool
	until time.Time // zero: muted indefinitely
}

// Member is one member of a group as the query methods report it.
type Member struct {
	User       UserID
	Role       Role
	Muted      bool      // a mute was imposed and not lifted; see MutedAt
	MutedUntil time.Time // end of the mute; zero means indefinitely
}

// MutedAt reports whether the member is muted at now: muted indefinitely, or
// now is before MutedUntil.
func (m Member) MutedAt(now time.Time) bool {
	return m.Muted && (m.MutedUntil.IsZero() || now.Before(m.MutedUntil))
}

// GroupCommand is a command for the Group aggregate: CreateGroup, AddMember,
// JoinGroup, LeaveGroup, KickMember, SetRole, RenameGroup, MuteMember,
// UnmuteMember, UnbanMember, SetHistoryVisibility or DissolveGroup.
type GroupCommand interface{ groupCommand() }

// CreateGroup creates the group with Owner as its owner and Members as
// members. Decide trims the name, drops duplicate members and the owner from
// Members, and keeps the first-seen order.
type CreateGroup struct {
	Group   GroupID
	Name    string
	Owner   UserID
	Members []UserID
	Open    bool
}

// AddMember adds User. In an open group any member (Actor) may add; in a
// closed one only admins and the owner. A banned user is added only by an
// admin or the owner, and the add lifts the ban.
type AddMember struct{ Actor, User UserID }

// UnbanMember takes Target off the ban list; Actor is an admin or the owner.
type UnbanMember struct{ Actor, Target UserID }

// JoinGroup makes User a member of an open group.
type JoinGroup struct{ User UserID }

// LeaveGroup removes User, a member other than the owner.
type LeaveGroup struct{ User UserID }

// KickMember removes Target and bans them; Actor is an admin or the owner
// and outranks Target.
type KickMember struct{ Actor, Target UserID }

// SetRole makes Target a member or an admin; Actor is the owner.
type SetRole struct {
	Actor, Target UserID
	Role          Role
}

// RenameGroup renames the group; Actor is an admin or the owner.
type RenameGroup struct {
	Actor UserID
	Name  string
}

// MuteMember forbids Target to post until Until (zero: indefinitely); Actor
// is an admin or the owner and outranks Target. Muting a muted member replaces
// the mute.
type MuteMember struct {
	Actor, Target UserID
	Until         time.Time
}

// UnmuteMember lifts Target's mute; Actor is an admin or the owner and
// outranks Target.
type UnmuteMember struct{ Actor, Target UserID }

// DissolveGroup ends the group; Actor is the owner.
type DissolveGroup struct{ Actor UserID }

// SetHistoryVisibility decides whether members who join from now on read the
// group's history from its first message (Visible) or only what is said
// while they are members (the default); Actor is an admin or the owner. It
// is not retroactive: a membership keeps the start it had when it began.
type SetHistoryVisibility struct {
	Actor   UserID
	Visible bool
}

func (CreateGroup) groupCommand()          {}
func (AddMember) groupCommand()            {}
func (JoinGroup) groupCommand()            {}
func (LeaveGroup) groupCommand()           {}
func (KickMember) groupCommand()           {}
func (SetRole) groupCommand()              {}
func (RenameGroup) groupCommand()          {}
func (MuteMember) groupCommand()           {}
func (UnmuteMember) groupCommand()         {}
func (UnbanMember) groupCommand()          {}
func (DissolveGroup) groupCommand()        {}
func (SetHistoryVisibility) groupCommand() {}

// NewGroup returns the not-yet-created aggregate of id, ready for
// CreateGroup. It returns an EInvalid error for a malformed id.
func NewGroup(id GroupID) (*Group, error) {
	if !id.Valid() {
		return nil, Errorf(EInvalid, "domain: invalid group id %q", id)
	}
	return &Group{id: id}, nil
}

// RebuildGroup replays the events of group id, as read from the log; with no
// events it returns a group that does not exist yet. It trusts the log: it
// only fails, with EInvalid, on an event that does not belong to this
// aggregate.
func RebuildGroup(id GroupID, events []Event) (*Group, error) {
	g := &Group{id: id}
	if err := applyAll(g, events); err != nil {
		return nil, err
	}
	return g, nil
}

// ID returns the group's id.
func (g *Group) ID() GroupID { return g.id }

// AggregateID returns "g/<ulid>".
func (g *Group) AggregateID() string { return string(g.id) }

// PartitionKey returns the group id, which the group's conversation shares.
func (g *Group) PartitionKey() string { return string(g.id) }

// Conversation returns the group's conversation.
func (g *Group) Conversation() ConversationID { return GroupConversation(g.id) }

// Version returns the number of events applied.
func (g *Group) Version() uint64 { return g.version }

// Exists reports whether the group was created (dissolved groups exist).
func (g *Group) Exists() bool { return g.created }

// Dissolved reports whether the group was dissolved.
func (g *Group) Dissolved() bool { return g.dissolved }

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Owner returns the group's owner.
func (g *Group) Owner() UserID { return g.owner }

// Open reports whether anyone may join without being added.
func (g *Group) Open() bool { return g.open }

// HistoryVisible reports whether members who join now read the history from
// the group's first message; otherwise a member reads only the messages sent
// while they were a member.
func (g *Group) HistoryVisible() bool { return g.historyVisible }

// Len returns the number of members, owner included.
func (g *Group) Len() int { return len(g.members) }

// Members returns the members sorted by user id.
func (g *Group) Members() []Member {
	ms := make([]Member, 0, len(g.members))
	for u, m := range g.members {
		ms = append(ms, Member{User: u, Role: m.role, Muted: m.muted, MutedUntil: m.until})
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.User, b.User) })
	return ms
}

// Banned returns the users on the ban list, sorted.
func (g *Group) Banned() []UserID {
	us := make([]UserID, 0, len(g.banned))
	for u := range g.banned {
		us = append(us, u)
	}
	slices.Sort(us)
	return us
}

// IsBanned reports whether user is on the ban list.
func (g *Group) IsBanned(user UserID) bool { return g.banned[user] }

// Member returns user's membership, if user is a member.
func (g *Group) Member(user UserID) (Member, bool) {
	m, ok := g.members[user]
	return Member{User: user, Role: m.role, Muted: m.muted, MutedUntil: m.until}, ok
}

// Role returns user's role, if user is a member.
func (g *Group) Role(user UserID) (Role, bool) {
	m, ok := g.members[user]
	return m.role, ok
}

// IsAdmin reports whether user is an admin or the owner.
func (g *Group) IsAdmin(user UserID) bool { return g.members[user].role >= RoleAdmin }

// CanPost returns nil if user may post to the group at now. It returns
// ENotFound if the group does not exist, EDissolved if it was dissolved,
// ENotMember if user is not a member and EMuted while user is muted.
func (g *Group) CanPost(user UserID, now time.Time) error {
	if err := g.live(); err != nil {
		return err
	}
	m, ok := g.Member(user)
	switch {
	case !ok:
		return Errorf(ENotMember, "domain: %s is not a member of %s", user, g.id)
	case m.MutedAt(now):
		return Errorf(EMuted, "domain: %s is muted in %s", user, g.id)
	}
	return nil
}

// live returns ENotFound for a group never created and EDissolved for a
// dissolved one.
func (g *Group) live() error {
	switch {
	case g.dissolved:
		return Errorf(EDissolved, "domain: group %s was dissolved", g.id)
	case !g.created:
		return Errorf(ENotFound, "domain: group %s not found", g.id)
	}
	return nil
}

// Decide returns the events that carry out cmd at now. Every command returns
// EDissolved on a dissolved group; CreateGroup returns EExists on a created
// one and EInvalid for a command naming another group; every other command
// returns ENotFound on a group not yet created, and ENotMember if the user
// acting (Actor, or User of LeaveGroup) is not a member. Beyond that:
//
//   - AddMember, JoinGroup: EExists for a member, ETooLarge when the group
//     is full. AddMember: EForbidden in a closed group unless the actor is an
//     admin or the owner, and for a banned user unless the actor is an admin
//     or the owner. JoinGroup: EForbidden on a closed group and for a banned
//     user.
//   - UnbanMember: EForbidden unless the actor is an admin or the owner;
//     ENotFound if the target is not banned.
//   - LeaveGroup: EForbidden for the owner.
//   - KickMember, MuteMember, UnmuteMember: EForbidden unless the actor is an
//     admin or the owner, the target is someone else and the actor's role is
//     higher than the target's (admins act on members only, the owner on
//     everyone else); ENotMember for a target that is not a member.
//     MuteMember: EInvalid for an Until that is not after now or more than
//     Policy.MaxMute ahead (a zero Until mutes indefinitely). UnmuteMember:
//     ENotFound if the target is not muted at now.
//   - SetRole: EForbidden unless the actor is the owner, for the owner as
//     target and for RoleOwner (no transfer); EInvalid for an unknown role;
//     EExists if the target has the role already.
//   - RenameGroup: EForbidden unless the actor is an admin or the owner.
//   - SetHistoryVisibility: EForbidden unless the actor is an admin or the
//     owner; EExists if the setting has that value already.
//   - DissolveGroup: EForbidden unless the actor is the owner.
//
// Malformed fields give EInvalid, overlong ones ETooLarge.
func (g *Group) Decide(cmd GroupCommand, now time.Time, p Policy) ([]Event, error) {
	if g.dissolved {
		return nil, g.live()
	}
	if c, ok := cmd.(CreateGroup); ok {
		return g.decideCreate(c, p)
	}
	if err := g.live(); err != nil {
		return nil, err
	}
	switch c := cmd.(type) {
	case AddMember:
		actor, err := g.member(c.Actor)
		if err != nil {
			return nil, err
		}
		if !g.open && actor.role < RoleAdmin {
			return nil, Errorf(EForbidden, "domain: only admins and the owner may add members to closed group %s", g.id)
		}
		if err := g.admit(c.User, p); err != nil {
			return nil, err
		}
		if g.banned[c.User] && actor.role < RoleAdmin {
			return nil, Errorf(EForbidden, "domain: %s is banned from %s; only admins and the owner may add them back", c.User, g.id)
		}
		return []Event{MemberAdded{User: c.User, By: c.Actor}}, nil
	case JoinGroup:
		if err := g.admit(c.User, p); err != nil {
			return nil, err
		}
		if !g.open {
			return nil, Errorf(EForbidden, "domain: group %s is closed; ask an admin to add you", g.id)
		}
		if g.banned[c.User] {
			return nil, Errorf(EForbidden, "domain: %s is banned from %s until an admin lets them back", c.User, g.id)
		}
		return []Event{MemberJoined{User: c.User}}, nil
	case UnbanMember:
		if err := g.atLeast(c.Actor, RoleAdmin, "unban"); err != nil {
			return nil, err
		}
		if !g.banned[c.Target] {
			return nil, Errorf(ENotFound, "domain: %s is not banned from %s", c.Target, g.id)
		}
		return []Event{MemberUnbanned{User: c.Target, By: c.Actor}}, nil
	case LeaveGroup:
		m, err := g.member(c.User)
		if err != nil {
			return nil, err
		}
		if m.role == RoleOwner {
			return nil, Errorf(EForbidden, "domain: the owner cannot leave %s; dissolve it instead", g.id)
		}
		return []Event{MemberLeft{User: c.User}}, nil
	case KickMember:
		if err := g.outranks(c.Actor, c.Target, "kick"); err != nil {
			return nil, err
		}
		return []Event{MemberKicked{User: c.Target, By: c.Actor}}, nil
	case SetRole:
		return g.decideSetRole(c)
	case RenameGroup:
		name, err := cleanName("group name", c.Name, p.MaxNameBytes, true)
		if err != nil {
			return nil, err
		}
		if err := g.atLeast(c.Actor, RoleAdmin, "rename"); err != nil {
			return nil, err
		}
		return []Event{GroupRenamed{Name: name, By: c.Actor}}, nil
	case MuteMember:
		until, err := checkMuteEnd(c.Until, now, p)
		if err != nil {
			return nil, err
		}
		if err := g.outranks(c.Actor, c.Target, "mute"); err != nil {
			return nil, err
		}
		return []Event{MemberMuted{User: c.Target, By: c.Actor, Until: until}}, nil
	case UnmuteMember:
		if err := g.outranks(c.Actor, c.Target, "unmute"); err != nil {
			return nil, err
		}
		if m, _ := g.Member(c.Target); !m.MutedAt(now) {
			return nil, Errorf(ENotFound, "domain: %s is not muted in %s", c.Target, g.id)
		}
		return []Event{MemberUnmuted{User: c.Target, By: c.Actor}}, nil
	case SetHistoryVisibility:
		if err := g.atLeast(c.Actor, RoleAdmin, "change the history visibility"); err != nil {
			return nil, err
		}
		if g.historyVisible == c.Visible {
			return nil, Errorf(EExists, "domain: the history visibility of %s is already %v", g.id, c.Visible)
		}
		return []Event{GroupHistoryVisibilityChanged{Visible: c.Visible, By: c.Actor}}, nil
	case DissolveGroup:
		if err := g.atLeast(c.Actor, RoleOwner, "dissolve"); err != nil {
			return nil, err
		}
		return []Event{GroupDissolved{By: c.Actor}}, nil
	}
	return nil, unknownCommand(g.AggregateID(), cmd)
}

func (g *Group) decideCreate(c CreateGroup, p Policy) ([]Event, error) {
	if c.Group != g.id {
		return nil, Errorf(EInvalid, "domain: %s: command creates %q", g.id, c.Group)
	}
	if g.created {
		return nil, Errorf(EExists, "domain: group %s already exists", g.id)
	}
	name, err := cleanName("group name", c.Name, p.MaxNameBytes, true)
	if err != nil {
		return nil, err
	}
	if err := checkUser("owner", c.Owner); err != nil {
		return nil, err
	}
	var members []UserID // nil when empty, as a decoded event has it
	seen := map[UserID]bool{c.Owner: true}
	for _, u := range c.Members {
		if err := checkUser("member", u); err != nil {
			return nil, err
		}
		if !seen[u] {
			seen[u] = true
			members = append(members, u)
		}
	}
	if 1+len(members) > p.MaxGroupMembers {
		return nil, Errorf(ETooLarge, "domain: %d members exceed the limit of %d", 1+len(members), p.MaxGroupMembers)
	}
	return []Event{GroupCreated{Group: g.id, Name: name, Owner: c.Owner, Members: members, Open: c.Open}}, nil
}

func (g *Group) decideSetRole(c SetRole) ([]Event, error) {
	if c.Role != RoleMember && c.Role != RoleAdmin && c.Role != RoleOwner {
		return nil, Errorf(EInvalid, "domain: unknown role %v", c.Role)
	}
	if err := g.atLeast(c.Actor, RoleOwner, "set roles"); err != nil {
		return nil, err
	}
	target, err := g.member(c.Target)
	if err != nil {
		return nil, err
	}
	switch {
	case target.role == RoleOwner:
		return nil, Errorf(EForbidden, "domain: the owner's role cannot change")
	case c.Role == RoleOwner:
		return nil, Errorf(EForbidden, "domain: ownership cannot be transferred")
	case target.role == c.Role:
		return nil, Errorf(EExists, "domain: %s is already %v", c.Target, c.Role)
	}
	return []Event{MemberRoleChanged{User: c.Target, By: c.Actor, Role: c.Role}}, nil
}

// member returns u's membership, or ENotMember.
func (g *Group) member(u UserID) (membership, error) {
	m, ok := g.members[u]
	if !ok {
		return m, Errorf(ENotMember, "domain: %s is not a member of %s", u, g.id)
	}
	return m, nil
}

// atLeast returns ENotMember if actor is not a member and EForbidden if the
// actor's role is below min.
func (g *Group) atLeast(actor UserID, min Role, verb string) error {
	m, err := g.member(actor)
	if err != nil {
		return err
	}
	if m.role < min {
		who := "admins and the owner"
		if min == RoleOwner {
			who = "the owner"
		}
		return Errorf(EForbidden, "domain: only %s may %s in %s", who, verb, g.id)
	}
	return nil
}

// outranks checks that actor, an admin or the owner, may act on target: a
// different member of a lower role.
func (g *Group) outranks(actor, target UserID, verb string) error {
	if err := g.atLeast(actor, RoleAdmin, verb); err != nil {
		return err
	}
	if actor == target {
		return Errorf(EForbidden, "domain: %s cannot %s themselves", actor, verb)
	}
	t, err := g.member(target)
	if err != nil {
		return err
	}
	if t.role >= g.members[actor].role {
		return Errorf(EForbidden, "domain: %s cannot %s %s, a %v", actor, verb, target, t.role)
	}
	return nil
}

// admit checks that u may become a member: a well-formed id (EInvalid), not
// a member already (EExists), room left (ETooLarge).
func (g *Group) admit(u UserID, p Policy) error {
	if err := checkUser("user", u); err != nil {
		return err
	}
	if _, ok := g.members[u]; ok {
		return Errorf(EExists, "domain: %s is already a member of %s", u, g.id)
	}
	if len(g.members) >= p.MaxGroupMembers {
		return Errorf(ETooLarge, "domain: group %s is full (%d members)", g.id, p.MaxGroupMembers)
	}
	return nil
}

// Apply applies one event. It returns an EInvalid error for an event of
// another aggregate kind, a GroupCreated of another group or a second one, and
// any event before GroupCreated.
func (g *Group) Apply(e Event) error {
	if c, ok := e.(GroupCreated); ok {
		if g.created || c.Group != g.id {
			return foreign(g.AggregateID(), e)
		}
		g.created, g.name, g.owner, g.open = true, c.Name, c.Owner, c.Open
		g.members = make(map[UserID]membership, 1+len(c.Members))
		for _, u := range c.Members {
			g.members[u] = membership{role: RoleMember}
		}
		g.members[c.Owner] = membership{role: RoleOwner}
		g.version++
		return nil
	}
	if !g.created {
		return foreign(g.AggregateID(), e)
	}
	switch e := e.(type) {
	case MemberAdded:
		g.join(e.User)
		delete(g.banned, e.User) // only admins add a banned user: the add lets them back
	case MemberJoined:
		g.join(e.User)
	case MemberLeft:
		delete(g.members, e.User)
	case MemberKicked:
		delete(g.members, e.User)
		if g.banned == nil {
			g.banned = make(map[UserID]bool)
		}
		g.banned[e.User] = true
	case MemberUnbanned:
		delete(g.banned, e.User)
	case MemberRoleChanged:
		if m, ok := g.members[e.User]; ok {
			m.role = e.Role
			g.members[e.User] = m
		}
	case GroupRenamed:
		g.name = e.Name
	case MemberMuted:
		if m, ok := g.members[e.User]; ok {
			m.muted, m.until = true, e.Until
			g.members[e.User] = m
		}
	case MemberUnmuted:
		if m, ok := g.members[e.User]; ok {
			m.muted, m.until = false, time.Time{}
			g.members[e.User] = m
		}
	case GroupHistoryVisibilityChanged:
		g.historyVisible = e.Visible
	case GroupDissolved:
		g.dissolved = true
	default:
		return foreign(g.AggregateID(), e)
	}
	g.version++
	return nil
}

// join adds u as a plain member unless u is a member already.
func (g *Group) join(u UserID) {
	if _, ok := g.members[u]; !ok {
		g.members[u] = membership{role: RoleMember}
	}
}
