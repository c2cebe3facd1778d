package push

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/inbox"
	redispipe "github.com/mpim/mpim/internal/pipeline"
	"github.com/mpim/mpim/projectors"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/push/webhook"
	"github.com/redis/go-redis/v9"
)

// maxSenderName is the most of a sender's name a notification carries (the
// webhook's bound).
const maxSenderName = 256

// event is what one log event tells its recipients, or the read marker it
// sets.
type event struct {
	r            *eventstore.Recorded
	users        []domain.UserID       // the recipients, the sender left out
	group        domain.GroupID        // a group message's group, whose members are the recipients
	conversation domain.ConversationID // "" for a friend request
	sender       domain.UserID
	text         string
	seq          uint64
	message      bool          // a message: unread for its recipients, read for its sender
	reader       domain.UserID // the user of a read marker (ConversationRead)
}

// mute names a recipient's conversation.
type mute struct {
	user domain.UserID
	conv domain.ConversationID
}

// lookups are what one batch's events need of the directory and of
// presence, each read once per user (a mute once per user and
// conversation) and every kind in one round trip for the whole batch.
type lookups struct {
	devices map[domain.UserID][]webhook.Device // recipients' devices with a token and no live route
	muted   map[mute]bool
	names   map[domain.UserID]string // senders of events that tell someone
}

// told reports whether u is to be told of ev: u has a device to push to
// and did not mute the conversation.
func (l *lookups) told(ev *event, u domain.UserID) bool {
	return len(l.devices[u]) > 0 && (ev.conversation == "" || !l.muted[mute{u, ev.conversation}])
}

// notifications returns the notifications of b's events, in log order,
// with their unread badges. What they need of the cache read model is read
// in a few round trips whatever the number of events and recipients
// (lookup); the badges take one read of the MySQL read model per notified
// user (badges).
func (p *Projector) notifications(ctx context.Context, b *projectors.Batch) ([]webhook.Notification, error) {
	evs, err := p.events(ctx, b)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	look, err := p.lookup(ctx, evs)
	if err != nil {
		return nil, err
	}
	var out []webhook.Notification
	var marks []mark
	for i := range evs {
		ev := &evs[i]
		switch {
		case ev.reader != "":
			marks = append(marks, mark{kind: markRead, user: ev.reader, conv: ev.conversation, seq: ev.seq, note: -1})
		case ev.message && ev.sender != "":
			marks = append(marks, mark{kind: markRead, user: ev.sender, conv: ev.conversation, seq: ev.seq, note: -1})
		}
		for _, u := range ev.users {
			// A user with no device to push to needs no badge; one who
			// muted the conversation still has the message unread.
			if len(look.devices[u]) == 0 {
				continue
			}
			m := mark{kind: markNotice, user: u, conv: ev.conversation, seq: ev.seq, note: -1}
			if ev.message {
				m.kind = markMessage
			}
			if look.told(ev, u) {
				m.note = len(out)
				out = append(out, webhook.Notification{User: u, Devices: look.devices[u], Conversation: ev.conversation, Sender: ev.sender,
					SenderName: look.names[ev.sender], Text: ev.text, EventID: EventID(ev.r.Partition, ev.r.Position, u), Seq: int64(ev.seq)})
			}
			marks = append(marks, m)
		}
	}
	if err := p.badges(ctx, out, marks); err != nil {
		return nil, err
	}
	return out, nil
}

// events returns b's events that tell someone or set a read marker (which
// the badges count), in log order, with their recipients; the members of
// the batch's groups are read in one round trip.
func (p *Projector) events(ctx context.Context, b *projectors.Batch) ([]event, error) {
	var out []event
	var groups []domain.GroupID
	group := map[domain.GroupID]int{} // index in groups
	for i := range b.Events {
		ev, ok := p.event(&b.Events[i])
		if !ok {
			continue
		}
		if _, seen := group[ev.group]; ev.group != "" && !seen {
			group[ev.group] = len(groups)
			groups = append(groups, ev.group)
		}
		out = append(out, ev)
	}
	var members [][]domain.UserID
	if len(groups) > 0 {
		var err error
		if members, err = p.dir.MemberIDsOf(ctx, groups); err != nil {
			return nil, fmt.Errorf("push: members of %d groups: %w", len(groups), err)
		}
	}
	for i := range out {
		ev := &out[i]
		if ev.group != "" {
			ev.users = members[group[ev.group]]
		}
		if len(ev.users) > p.cfg.MaxRecipients {
			p.cfg.Logger.Warn("push: event has more recipients than notified", "position", ev.r.Position.String(),
				"recipients", len(ev.users), "notified", p.cfg.MaxRecipients)
			ev.users = ev.users[:p.cfg.MaxRecipients]
		}
		users := make([]domain.UserID, 0, len(ev.users))
		for _, u := range ev.users {
			if u != ev.sender {
				users = append(users, u)
			}
		}
		ev.users = users
	}
	return out, nil
}

// event returns who r's event tells of what, or the read marker it sets;
// false for an event that does neither. An event that cannot be decoded tells nobody (the
// runner quarantines undecodable entries in the other projectors).
func (p *Projector) event(r *eventstore.Recorded) (event, bool) {
	_, ev, err := r.Domain()
	if err != nil {
		p.cfg.Logger.Warn("push: undecodable event skipped", "position", r.Position.String(), "err", err)
		return event{}, false
	}
	switch e := ev.(type) {
	case domain.MessageSent:
		out := event{r: r, conversation: e.Conversation, sender: e.Sender, text: e.Text, seq: e.Seq, message: true}
		if a, b, ok := e.Conversation.Members(); ok {
			out.users = []domain.UserID{a, b}
		} else if g, ok := e.Conversation.Group(); ok {
			out.group = g
		}
		return out, true
	case domain.FriendRequested:
		return event{r: r, users: []domain.UserID{e.To}, sender: e.From, text: e.Message}, true
	case domain.MemberAdded:
		g := domain.GroupID(r.Event.GetAggregate())
		return event{r: r, users: []domain.UserID{e.User}, conversation: domain.GroupConversation(g), sender: e.By}, true
	case domain.GroupCreated:
		return event{r: r, users: e.Members, conversation: domain.GroupConversation(e.Group), sender: e.Owner}, true
	case domain.ConversationRead:
		return event{r: r, reader: e.User, conversation: e.Conversation, seq: e.Seq}, true
	}
	return event{}, false
}

// lookup reads what evs need, narrowing at each step: every recipient's
// push targets (a user without any is done with), then the presence of
// those with targets, the mutes of those left with a device to push to,
// and the names of the senders of events that tell someone. Each step is
// one round trip (a pipeline) for the whole batch, none when it has
// nothing to ask.
func (p *Projector) lookup(ctx context.Context, evs []event) (*lookups, error) {
	look := &lookups{devices: map[domain.UserID][]webhook.Device{}, muted: map[mute]bool{}, names: map[domain.UserID]string{}}
	var users []domain.UserID
	seen := map[domain.UserID]bool{}
	for i := range evs {
		for _, u := range evs[i].users {
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	if len(users) == 0 {
		return look, nil
	}
	targets, err := p.dir.PushTargets(ctx, users)
	if err != nil {
		return nil, fmt.Errorf("push: push targets of %d users: %w", len(users), err)
	}
	now := p.cfg.Now()
	if err := p.devices(ctx, look, users, targets, now); err != nil {
		return nil, err
	}
	if err := p.mutes(ctx, look, evs, now); err != nil {
		return nil, err
	}
	return look, p.names(ctx, look, evs)
}

// devices sets look.devices of each of users that has targets (its push
// targets, in the order of users): the devices with a token and no live
// route at now, at most webhook.MaxDevices of them.
func (p *Projector) devices(ctx context.Context, look *lookups, users []domain.UserID, targets [][]domain.DeviceToken, now time.Time) error {
	var with []int // indexes in users of those with targets
	for i := range users {
		if len(targets[i]) > 0 {
			with = append(with, i)
		}
	}
	if len(with) == 0 {
		return nil
	}
	routes, err := redispipe.Chunked(ctx, p.rdb, len(with), func(pipe redis.Pipeliner, i int) *redis.MapStringStringCmd {
		return pipe.HGetAll(ctx, p.keys.Presence(users[with[i]]))
	})
	if err != nil {
		return fmt.Errorf("push: presence of %d users: %w", len(with), err)
	}
	for j, i := range with {
		live := routes[j].Val()
		var out []webhook.Device
		for _, t := range targets[i] {
			if r, err := inbox.DecodeRoute(live[string(t.Device)]); err == nil && r.Live(now) {
				continue
			}
			if len(out) == webhook.MaxDevices {
				break
			}
			out = append(out, webhook.Device{ID: t.Device, Platform: string(t.Platform), Token: t.Token, AppID: t.AppID})
		}
		if len(out) > 0 {
			look.devices[users[i]] = out
		}
	}
	return nil
}

// mutes sets look.muted of every recipient with a device to push to in the
// conversation of each of evs, as at now.
func (p *Projector) mutes(ctx context.Context, look *lookups, evs []event, now time.Time) error {
	var users []domain.UserID
	var convs []domain.ConversationID
	asked := map[mute]bool{}
	for i := range evs {
		ev := &evs[i]
		for _, u := range ev.users {
			m := mute{u, ev.conversation}
			if ev.conversation != "" && len(look.devices[u]) > 0 && !asked[m] {
				asked[m] = true
				users, convs = append(users, u), append(convs, ev.conversation)
			}
		}
	}
	if len(users) == 0 {
		return nil
	}
	muted, err := p.dir.Muted(ctx, users, convs, now)
	if err != nil {
		return fmt.Errorf("push: %d mutes: %w", len(users), err)
	}
	for i, m := range muted {
		look.muted[mute{users[i], convs[i]}] = m
	}
	return nil
}

// names sets look.names of the sender of each of evs that tells someone:
// the display name, else the username, cut to maxSenderName bytes; "" when
// the sender is unknown.
func (p *Projector) names(ctx context.Context, look *lookups, evs []event) error {
	var senders []domain.UserID
	asked := map[domain.UserID]bool{}
	for i := range evs {
		ev := &evs[i]
		if ev.sender == "" || asked[ev.sender] || !slices.ContainsFunc(ev.users, func(u domain.UserID) bool { return look.told(ev, u) }) {
			continue
		}
		asked[ev.sender] = true
		senders = append(senders, ev.sender)
	}
	if len(senders) == 0 {
		return nil
	}
	profs, err := p.dir.Profiles(ctx, senders)
	if err != nil {
		return fmt.Errorf("push: profiles of %d senders: %w", len(senders), err)
	}
	for i, prof := range profs {
		look.names[senders[i]] = senderName(prof)
	}
	return nil
}

// senderName returns the name prof's user is shown by: the display name,
// else the username, cut to maxSenderName bytes; "" for nil.
func senderName(prof *mpimv1.Profile) string {
	n := prof.GetDisplayName()
	if n == "" {
		n = prof.GetUsername()
	}
	n = strings.ToValidUTF8(n, "")
	if len(n) > maxSenderName {
		end := maxSenderName
		for end > 0 && !utf8.RuneStart(n[end]) {
			end--
		}
		n = n[:end]
	}
	return n
}

// EventID is the event id of u's notification of the event at pos of
// partition: "p<partition>:<pos>:<user>". It names the event and the user
// told, so that the idempotency keys of the calls of one group message to
// several users differ, and it is the same whenever the event is applied
// again.
func EventID(partition int, pos eventstore.Position, u domain.UserID) string {
	b := make([]byte, 0, 64+len(u))
	b = append(b, 'p')
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, ':')
	b = pos.AppendTo(b)
	b = append(b, ':')
	b = append(b, u...)
	return string(b)
}
