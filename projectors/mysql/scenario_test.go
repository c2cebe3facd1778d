package mysql

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
)

// scenario drives the real write path (command.Service) with a random,
// realistic mix: registrations, logins, profiles, friend requests and
// blocks, groups with joins, leaves, kicks, roles, mutes and renames,
// direct and group messages, recalls, edits, read markers and deletions.
// Commands the domain refuses (a blocked pair, a non-member posting...) are
// part of the mix and ignored.
type scenario struct {
	svc   *command.Service
	users []command.Actor

	mu     sync.Mutex
	groups []domain.GroupID
	recent []sentMsg // ring of recent messages
	next   int
}

type sentMsg struct {
	conv   domain.ConversationID
	seq    uint64
	sender command.Actor
}

const passwordHash = commandtest.PasswordHash

// register registers username with displayName through the write path and
// returns the new user's id.
func (e *logEnv) register(tb testing.TB, username, displayName string) domain.UserID {
	tb.Helper()
	id, err := e.svc.Register(context.Background(), username, passwordHash, displayName, "")
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// createGroup creates a group owned by owner with members through the
// write path and returns its id.
func (e *logEnv) createGroup(tb testing.TB, owner command.Actor, name string, members []domain.UserID, open bool) domain.GroupID {
	tb.Helper()
	g, _, err := e.svc.CreateGroup(context.Background(), owner, name, members, open)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// newScenario registers users and creates a few groups.
func newScenario(ctx context.Context, tb testing.TB, svc *command.Service, users, groups int) *scenario {
	tb.Helper()
	s := &scenario{svc: svc, recent: make([]sentMsg, 0, 256)}
	tag := fmt.Sprintf("%x", rand.Uint32())
	for i := range users {
		id, err := svc.Register(ctx, fmt.Sprintf("u%d_%s", i, tag), passwordHash, fmt.Sprintf("User %d", i), "")
		if err != nil {
			tb.Fatal(err)
		}
		s.users = append(s.users, command.Actor{User: id, Device: domain.DeviceID(fmt.Sprintf("dev%d", i%3))})
	}
	rng := rand.New(rand.NewPCG(uint64(users), uint64(groups)))
	for i := range groups {
		owner := s.users[rng.IntN(len(s.users))]
		var members []domain.UserID
		for range 2 + rng.IntN(6) {
			members = append(members, s.users[rng.IntN(len(s.users))].User)
		}
		id, _, err := svc.CreateGroup(ctx, owner, fmt.Sprintf("group %d", i), members, i%2 == 0)
		if err != nil {
			tb.Fatal(err)
		}
		s.groups = append(s.groups, id)
	}
	return s
}

// run executes steps random actions on each of workers goroutines.
func (s *scenario) run(ctx context.Context, tb testing.TB, workers, steps int, seed uint64) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range steps {
				if ctx.Err() != nil {
					return
				}
				if err := s.step(ctx, rng); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Error(err)
	}
}

func (s *scenario) user(rng *rand.Rand) command.Actor { return s.users[rng.IntN(len(s.users))] }

func (s *scenario) pair(rng *rand.Rand) (command.Actor, command.Actor) {
	a := s.user(rng)
	for {
		if b := s.user(rng); b.User != a.User {
			return a, b
		}
	}
}

func (s *scenario) group(rng *rand.Rand) domain.GroupID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[rng.IntN(len(s.groups))]
}

func (s *scenario) remember(m sentMsg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) < cap(s.recent) {
		s.recent = append(s.recent, m)
		return
	}
	s.recent[s.next] = m
	s.next = (s.next + 1) % len(s.recent)
}

func (s *scenario) recentMsg(rng *rand.Rand) (sentMsg, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) == 0 {
		return sentMsg{}, false
	}
	return s.recent[rng.IntN(len(s.recent))], true
}

// member returns a random member of g other than the owner if notOwner,
// with the group.
func (s *scenario) member(ctx context.Context, rng *rand.Rand, g domain.GroupID, notOwner bool) (*domain.Group, command.Actor, bool) {
	grp, err := s.svc.Group(ctx, g)
	if err != nil || grp.Len() == 0 {
		return grp, command.Actor{}, false
	}
	ms := grp.Members()
	m := ms[rng.IntN(len(ms))]
	if notOwner && m.Role == domain.RoleOwner {
		return grp, command.Actor{}, false
	}
	return grp, s.actor(m.User), true
}

func (s *scenario) actor(u domain.UserID) command.Actor {
	for _, a := range s.users {
		if a.User == u {
			return a
		}
	}
	return command.Actor{User: u}
}

// step performs one random action. It returns an error only for failures
// that are not the domain refusing a command.
func (s *scenario) step(ctx context.Context, rng *rand.Rand) error {
	err := s.act(ctx, rng)
	switch domain.ErrorCode(err) {
	case "", domain.EInvalid, domain.ENotFound, domain.EConflict, domain.EExists, domain.EForbidden, domain.ENotMember,
		domain.EMuted, domain.EBlocked, domain.EWindowPassed, domain.EDissolved, domain.ENoRequest, domain.ETooLarge:
		return nil
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil //nolint:nilerr // the scenario's end, not a failure
	}
	return err
}

func (s *scenario) act(ctx context.Context, rng *rand.Rand) error {
	r := rng.IntN(100)
	text := fmt.Sprintf("hello %d %s", rng.IntN(1_000_000), []string{"", "with emoji 😀", "line\nbreak", "ünïcödé"}[rng.IntN(4)])
	switch {
	case r < 35:
		a, b := s.pair(rng)
		cmd := domain.SendMessage{Conversation: domain.DirectConversation(a.User, b.User), Kind: domain.KindText, Text: text,
			ClientMsgID: fmt.Sprintf("c%d", rng.Uint64())}
		if rng.IntN(10) == 0 {
			cmd.Kind, cmd.Text = domain.KindImage, ""
			cmd.Attachment = &domain.Attachment{URL: "https://img.example/x.png", Mime: "image/png", Size: 1234, Width: 64, Height: 48,
				Meta: map[string]string{"b": "2", "a": "1"}}
		}
		sent, err := s.svc.Send(ctx, a, cmd)
		if err == nil {
			s.remember(sentMsg{conv: sent.Conversation, seq: sent.Seq, sender: a})
		}
		return err
	case r < 58:
		g := s.group(rng)
		_, m, ok := s.member(ctx, rng, g, false)
		if !ok {
			return nil
		}
		sent, err := s.svc.Send(ctx, m, domain.SendMessage{Conversation: domain.GroupConversation(g), Kind: domain.KindText, Text: text})
		if err == nil {
			s.remember(sentMsg{conv: sent.Conversation, seq: sent.Seq, sender: m})
		}
		return err
	case r < 68:
		msg, ok := s.recentMsg(rng)
		if !ok {
			return nil
		}
		reader := msg.sender
		if x, y, ok := msg.conv.Members(); ok {
			reader = s.actor([]domain.UserID{x, y}[rng.IntN(2)])
		} else if rng.IntN(2) == 0 {
			reader = s.user(rng)
		}
		_, err := s.svc.MarkRead(ctx, reader, msg.conv, 1+rng.Uint64N(msg.seq))
		return err
	case r < 72:
		msg, ok := s.recentMsg(rng)
		if !ok {
			return nil
		}
		_, err := s.svc.Recall(ctx, msg.sender, domain.RecallMessage{Conversation: msg.conv, Seq: msg.seq})
		return err
	case r < 76:
		msg, ok := s.recentMsg(rng)
		if !ok {
			return nil
		}
		_, err := s.svc.Edit(ctx, msg.sender, domain.EditMessage{Conversation: msg.conv, Seq: msg.seq, Text: "edited " + text})
		return err
	case r < 78:
		msg, ok := s.recentMsg(rng)
		if !ok {
			return nil
		}
		_, err := s.svc.DeleteForMe(ctx, msg.sender, msg.conv, msg.seq)
		return err
	case r < 87:
		a, b := s.pair(rng)
		var cmd domain.RelationshipCommand
		switch x := rng.IntN(20); {
		case x < 7:
			cmd = domain.RequestFriend{From: a.User, To: b.User, Message: "hi " + text}
		case x < 12:
			cmd = domain.AcceptFriend{By: a.User}
		case x < 14:
			cmd = domain.DeclineFriend{By: a.User}
		case x < 16:
			cmd = domain.RemoveFriend{By: a.User}
		case x < 18:
			cmd = domain.Block{By: a.User}
		default:
			cmd = domain.Unblock{By: a.User}
		}
		_, err := s.svc.Contact(ctx, a, b.User, cmd)
		if _, ok := cmd.(domain.RequestFriend); ok && err == nil && rng.IntN(2) == 0 {
			_, err = s.svc.Contact(ctx, b, a.User, domain.AcceptFriend{By: b.User})
		}
		return err
	case r < 96:
		return s.groupAction(ctx, rng)
	default:
		a := s.user(rng)
		var cmd domain.UserCommand
		switch rng.IntN(3) {
		case 0:
			cmd = domain.UpdateProfile{DisplayName: "name " + text[:8], AvatarURL: "https://a.example/" + fmt.Sprint(rng.IntN(100))}
		case 1:
			cmd = domain.LogIn{Device: a.Device, Platform: []string{"ios", "android", "web"}[rng.IntN(3)]}
		default:
			cmd = domain.LogOut{Device: a.Device}
		}
		_, err := s.svc.UpdateUser(ctx, a, cmd)
		return err
	}
}

func (s *scenario) groupAction(ctx context.Context, rng *rand.Rand) error {
	g := s.group(rng)
	grp, m, ok := s.member(ctx, rng, g, false)
	if !ok {
		return nil
	}
	owner := s.actor(grp.Owner())
	var cmd domain.GroupCommand
	actor := owner
	switch x := rng.IntN(40); {
	case x < 10:
		actor, cmd = m, domain.AddMember{Actor: m.User, User: s.user(rng).User}
	case x < 16:
		u := s.user(rng)
		actor, cmd = u, domain.JoinGroup{User: u.User}
	case x < 22:
		actor, cmd = m, domain.LeaveGroup{User: m.User}
	case x < 25:
		cmd = domain.KickMember{Actor: owner.User, Target: m.User}
	case x < 29:
		cmd = domain.SetRole{Actor: owner.User, Target: m.User, Role: []domain.Role{domain.RoleMember, domain.RoleAdmin}[rng.IntN(2)]}
	case x < 32:
		cmd = domain.RenameGroup{Actor: owner.User, Name: fmt.Sprintf("renamed %d", rng.IntN(1000))}
	case x < 35:
		var until time.Time
		if rng.IntN(2) == 0 {
			until = time.Now().Add(time.Hour)
		}
		cmd = domain.MuteMember{Actor: owner.User, Target: m.User, Until: until}
	case x < 38:
		cmd = domain.UnmuteMember{Actor: owner.User, Target: m.User}
	case x < 39:
		var members []domain.UserID
		for range 3 {
			members = append(members, s.user(rng).User)
		}
		id, _, err := s.svc.CreateGroup(ctx, m, "new group", members, true)
		if err == nil {
			s.mu.Lock()
			s.groups = append(s.groups, id)
			s.mu.Unlock()
		}
		return err
	default:
		if rng.IntN(4) != 0 {
			return nil
		}
		cmd = domain.DissolveGroup{Actor: owner.User}
	}
	_, err := s.svc.UpdateGroup(ctx, actor, g, cmd)
	return err
}
