package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The chat's conversation commands (/to, /group, /join, /history,
// /friends) and sending plain text to the open conversation.

// lookup returns the user id of username.
func (c *chat) lookup(ctx context.Context, username string) (string, error) {
	r, err := c.call(ctx, &mpimv1.ClientFrame_FindUser{FindUser: &mpimv1.FindUserRequest{Username: username}})
	if err != nil {
		return "", fmt.Errorf("user %s: %w", username, err)
	}
	p := r.GetFindUser()
	c.mu.Lock()
	c.names[p.GetUserId()] = p.GetUsername()
	c.mu.Unlock()
	return p.GetUserId(), nil
}

// name returns a user's username, asking the server once.
func (c *chat) name(ctx context.Context, id string) string {
	c.mu.Lock()
	n, ok := c.names[id]
	c.mu.Unlock()
	if ok {
		return n
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{UserId: id}})
	if err != nil {
		return id
	}
	n = r.GetGetProfile().GetUsername()
	c.mu.Lock()
	c.names[id] = n
	c.mu.Unlock()
	return n
}

func (c *chat) setOpen(o *openConv) {
	c.mu.Lock()
	c.open = o
	c.mu.Unlock()
	c.printf("now talking in %s", o.title)
}

func (c *chat) cmdTo(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: /to USER")
	}
	id, err := c.lookup(ctx, args[0])
	if err != nil {
		return err
	}
	c.mu.Lock()
	me := c.me
	c.mu.Unlock()
	if id == me {
		return errors.New("cannot open a conversation with yourself")
	}
	conv := domain.DirectConversation(domain.UserID(me), domain.UserID(id))
	c.setOpen(&openConv{title: args[0], conversationID: string(conv)})
	return nil
}

func (c *chat) cmdGroup(ctx context.Context, args []string) error {
	if len(args) < 1 {
		return errors.New("usage: /group NAME USER...") //nolint:staticcheck // the ellipsis is usage syntax
	}
	var ids []string
	for _, u := range args[1:] {
		id, err := c.lookup(ctx, u)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: args[0], MemberIds: ids}})
	if err != nil {
		return err
	}
	g := r.GetCreateGroup()
	c.printf("created group %s (%s)", args[0], g.GetGroupId())
	c.setOpen(&openConv{title: "#" + args[0], conversationID: g.GetConversationId()})
	return nil
}

func (c *chat) cmdJoin(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: /join GROUPID")
	}
	if _, err := c.call(ctx, &mpimv1.ClientFrame_JoinGroup{JoinGroup: &mpimv1.JoinGroupRequest{GroupId: args[0]}}); err != nil {
		return err
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_GroupMembers{GroupMembers: &mpimv1.GroupMembersRequest{GroupId: args[0]}})
	if err != nil {
		return err
	}
	g := r.GetGroupMembers().GetGroup()
	c.setOpen(&openConv{title: "#" + g.GetName(), conversationID: g.GetConversationId()})
	return nil
}

func (c *chat) current() (*openConv, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil {
		return nil, errors.New("no open conversation: use /to USER, /group NAME USER... or /join GROUPID first")
	}
	return c.open, nil
}

func (c *chat) send(ctx context.Context, text string) {
	o, err := c.current()
	if err != nil {
		c.printf("error: %v", err)
		return
	}
	// One client message id for every attempt: a send retried after the
	// connection dropped is answered with the first attempt's result if
	// that one got through, and never sent twice.
	req := &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{
		To:          &mpimv1.SendRequest_ConversationId{ConversationId: o.conversationID},
		ClientMsgId: randomHex(8), Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: text}}
	pctx, cancel := context.WithTimeout(ctx, sendPatience)
	defer cancel()
	for {
		cl, err := c.s.Conn(pctx)
		if err != nil {
			c.printf("error: message not sent: %v", err)
			return
		}
		cctx, ccancel := context.WithTimeout(pctx, callTimeout)
		r, err := cl.Request(cctx, req)
		ccancel()
		var re *client.ResponseError
		switch {
		case err == nil:
			c.showSent(ctx, r.GetSend(), text)
			return
		case errors.As(err, &re):
			switch re.Code {
			case "unavailable", "conflict", "rate_limited":
				select {
				case <-time.After(max(re.RetryAfter, 200*time.Millisecond)):
					continue
				case <-pctx.Done():
				}
			}
			c.printf("error: %v", re)
			return
		case pctx.Err() != nil:
			c.printf("error: message not sent: %v", err)
			return
		}
		// No answer: the connection ended (or the answer is late). Again
		// on the next connection, with the same id.
		select {
		case <-cl.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// showSent prints a message this device sent from its send's answer: the
// gateway does not push it back to the device that sent it. A retry
// answered as a duplicate of an attempt already shown prints nothing.
func (c *chat) showSent(ctx context.Context, res *mpimv1.SendResult, text string) {
	c.mu.Lock()
	me := c.me
	dup := c.seen[string(res.GetEventId())]
	c.seen[string(res.GetEventId())] = true
	where := ""
	if c.open == nil || c.open.conversationID != res.GetConversationId() {
		where = " [" + res.GetConversationId() + "]"
	}
	c.mu.Unlock()
	if !dup {
		c.printf("[%s] %s: %s%s", clock(res.GetSentAtMs()), c.name(ctx, me), text, where)
	}
}

func (c *chat) cmdHistory(ctx context.Context, args []string) error {
	n := 20
	if len(args) > 1 {
		return errors.New("usage: /history [N]")
	}
	if len(args) == 1 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 || v > 200 {
			return fmt.Errorf("/history: N must be 1..200, got %q", args[0])
		}
		n = v
	}
	o, err := c.current()
	if err != nil {
		return err
	}
	r, err := c.call(ctx, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: o.conversationID, Limit: uint32(n)}})
	if err != nil {
		return err
	}
	msgs := r.GetHistory().GetMessages()
	c.printf("-- %d message(s) of %s --", len(msgs), o.title)
	for _, m := range msgs {
		text := m.GetText()
		switch {
		case m.GetDeleted():
			text = "(deleted)"
		case m.GetRecalledAtMs() != 0:
			text = "(recalled)"
		}
		c.printf("[%s] %s: %s", clock(m.GetSentAtMs()), c.name(ctx, m.GetSenderId()), text)
	}
	return nil
}

func (c *chat) cmdFriends(ctx context.Context) error {
	r, err := c.call(ctx, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
	if err != nil {
		return err
	}
	friends := r.GetListFriends().GetFriends()
	c.printf("-- %d friend(s) --", len(friends))
	for _, f := range friends {
		c.printf("  %s (%s)", f.GetUsername(), f.GetDisplayName())
	}
	r, err = c.call(ctx, &mpimv1.ClientFrame_ListFriendRequests{ListFriendRequests: &mpimv1.ListFriendRequestsRequest{}})
	if err != nil {
		return err
	}
	for _, p := range r.GetListFriendRequests().GetIncoming() {
		c.printf("  request from %s: %s (/accept %s)", p.GetUser().GetUsername(), p.GetMessage(), p.GetUser().GetUsername())
	}
	for _, p := range r.GetListFriendRequests().GetOutgoing() {
		c.printf("  request to %s pending", c.name(ctx, p.GetToUserId()))
	}
	return nil
}

func clock(ms int64) string { return time.UnixMilli(ms).Format("15:04:05") }
