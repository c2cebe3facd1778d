package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/mpim/mpim/client"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// handleFrame prints the pushes and signals the session receives; the
// session acknowledges each push once it is shown. It runs on the
// session's receiver goroutine.
func (c *chat) handleFrame(f *mpimv1.ServerFrame) {
	<-c.ready
	ctx := c.ctx
	switch {
	case f.GetPush() != nil:
		p := f.GetPush()
		ev, err := client.PushEvent(p)
		if err != nil {
			c.printf("error: %v", err)
			return
		}
		c.mu.Lock()
		dup := c.seen[string(ev.GetId())]
		c.seen[string(ev.GetId())] = true
		c.mu.Unlock()
		if !dup {
			c.show(ctx, p.GetType(), ev)
		}
	case f.GetSignal() != nil:
		s := f.GetSignal()
		if s.GetKind() == "typing" {
			c.printf("* %s is typing", c.name(ctx, s.GetFromUserId()))
		}
	case f.GetSyncRequired() != nil:
		if f.GetSyncRequired().GetCursor() == "" {
			c.printf("* a new device: /history shows earlier messages")
		} else {
			c.printf("* older pushes were dropped; /history shows what you missed")
		}
	case f.GetGoaway() != nil:
		// The session leaves after the last acks and comes back when asked.
		c.printf("* server going away: %s", f.GetGoaway().GetReason())
	}
}

// show prints one pushed event.
func (c *chat) show(ctx context.Context, typ string, ev *mpimv1.Event) {
	at := clock(ev.GetOccurredAtMs())
	switch {
	case ev.GetMessageSent() != nil:
		m := ev.GetMessageSent()
		text := m.GetText()
		if m.GetKind() != mpimv1.MessageKind_MESSAGE_KIND_TEXT {
			text = fmt.Sprintf("(%s %s)", strings.TrimPrefix(m.GetKind().String(), "MESSAGE_KIND_"), m.GetAttachment().GetUrl())
		}
		where := ""
		c.mu.Lock()
		if c.open == nil || c.open.conversationID != m.GetConversationId() {
			where = " [" + m.GetConversationId() + "]"
		}
		c.mu.Unlock()
		c.printf("[%s] %s: %s%s", at, c.name(ctx, m.GetSenderId()), text, where)
	case ev.GetMessageRecalled() != nil:
		c.printf("[%s] * %s recalled message %d", at, c.name(ctx, ev.GetMessageRecalled().GetByUserId()), ev.GetMessageRecalled().GetSeq())
	case ev.GetMessageEdited() != nil:
		e := ev.GetMessageEdited()
		c.printf("[%s] * %s edited message %d: %s", at, c.name(ctx, e.GetByUserId()), e.GetSeq(), e.GetText())
	case ev.GetFriendRequested() != nil:
		e := ev.GetFriendRequested()
		c.printf("[%s] * friend request from %s to %s: %s", at, c.name(ctx, e.GetFromUserId()), c.name(ctx, e.GetToUserId()), e.GetMessage())
	case ev.GetFriendRequestAccepted() != nil:
		e := ev.GetFriendRequestAccepted()
		c.printf("[%s] * %s and %s are now friends", at, c.name(ctx, e.GetFromUserId()), c.name(ctx, e.GetByUserId()))
	case ev.GetGroupCreated() != nil:
		e := ev.GetGroupCreated()
		c.printf("[%s] * %s created group %s (%s); /join or talk with its id", at, c.name(ctx, e.GetOwnerId()), e.GetName(), e.GetGroupId())
	case ev.GetMemberJoined() != nil:
		c.printf("[%s] * %s joined %s", at, c.name(ctx, ev.GetMemberJoined().GetUserId()), ev.GetAggregate())
	case ev.GetMemberAdded() != nil:
		c.printf("[%s] * %s was added to %s", at, c.name(ctx, ev.GetMemberAdded().GetUserId()), ev.GetAggregate())
	case ev.GetConversationRead() != nil:
		// Read markers are not worth a line in a terminal.
	default:
		c.printf("[%s] * %s", at, typ)
	}
}
