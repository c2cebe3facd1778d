package command

import (
	"context"
	"errors"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
)

// Sent is the server's acknowledgement of a message.
type Sent struct {
	EventID      [16]byte
	Conversation domain.ConversationID
	Seq          uint64
	Position     eventstore.Position
	SentAt       time.Time
	// Duplicate is true when the client message id had been seen: nothing
	// was appended and the fields are those of the original message.
	Duplicate bool
}

// context of a conversation decision: the relationship (direct) or the group,
// and the guard that keeps the decision valid until the append.
type convState struct {
	rel   *domain.Relationship
	group *domain.Group
	guard eventstore.Guard
}

func (s *Service) conversation(ctx context.Context, conv domain.ConversationID, fresh bool) (convState, error) {
	if g, ok := conv.Group(); ok && conv.Valid() {
		group, err := s.group(ctx, g, fresh)
		if err != nil {
			return convState{}, err
		}
		return convState{group: group, guard: eventstore.Guard{Aggregate: string(g), Version: group.Version()}}, nil
	}
	a, b, ok := conv.Members()
	if !ok || !conv.Valid() {
		return convState{}, domain.Errorf(domain.EInvalid, "command: invalid conversation id %q", conv)
	}
	rel, err := s.relationship(ctx, a, b, fresh)
	if err != nil {
		return convState{}, err
	}
	return convState{rel: rel, guard: eventstore.Guard{Aggregate: domain.RelationshipID(a, b), Version: rel.Version()}}, nil
}

// Send posts a message. The decision (membership, mute, block) is made on the
// group or relationship state and guarded by its version, so a message never
// lands after a kick, mute or block it did not see. The store assigns the
// conversation seq. A non-empty ClientMsgID de-duplicates retries: a second
// Send with the same sender and client message id returns the original
// acknowledgement.
func (s *Service) Send(ctx context.Context, actor Actor, cmd domain.SendMessage) (Sent, error) {
	cmd.Sender, cmd.Device = actor.User, actor.Device
	var idem eventstore.IdempotencyKey
	if cmd.ClientMsgID != "" {
		idem = eventstore.IdempotencyKey("send:" + string(actor.User) + ":" + cmd.ClientMsgID)
	}
	agg := string(cmd.Conversation)
	var sentAt time.Time
	res, err := s.retry(ctx, func(fresh bool) (eventstore.AppendResult, error) {
		st, err := s.conversation(ctx, cmd.Conversation, fresh)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		now := s.cfg.Now()
		events, err := domain.DecideSend(cmd, now, s.policy, st.rel, st.group)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		msg := events[0].(domain.MessageSent)
		sentAt = msg.SentAt
		cell, err := domain.NewMessageState(msg).MarshalBinary()
		if err != nil {
			return eventstore.AppendResult{}, domain.Errorf(domain.EInternal, "command: %w", err)
		}
		envs, err := s.envelopes(actor, agg, now, events)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		return s.store.Append(ctx, eventstore.AppendRequest{
			PartitionKey: cmd.Conversation.PartitionKey(), IdempotencyKey: idem, Guards: []eventstore.Guard{st.guard},
			Streams: []eventstore.StreamAppend{{Aggregate: agg, Expected: eventstore.Any, Events: envs, Cells: []*eventstore.Cell{{Value: cell}}}},
		})
	})
	if err != nil {
		return Sent{}, err
	}
	ev := res.Events[0]
	if res.Duplicate {
		_, ms, err := s.messageState(ctx, cmd.Conversation, ev.Seq)
		if err != nil {
			return Sent{}, err
		}
		sentAt = ms.SentAt
	}
	return Sent{EventID: ev.ID, Conversation: cmd.Conversation, Seq: ev.Seq, Position: ev.Position, SentAt: sentAt, Duplicate: res.Duplicate}, nil
}

// messageState reads the cell of message seq.
func (s *Service) messageState(ctx context.Context, conv domain.ConversationID, seq uint64) ([]byte, domain.MessageState, error) {
	var st domain.MessageState
	raw, err := s.store.Cell(ctx, conv.PartitionKey(), string(conv), seq)
	if err != nil {
		if domain.ErrorCode(err) == domain.ENotFound {
			return nil, st, domain.Errorf(domain.ENotFound, "command: no message %d in %s", seq, conv)
		}
		return nil, st, domain.Errorf(domain.EUnavailable, "command: %w", err)
	}
	if err := st.UnmarshalBinary(raw); err != nil {
		return nil, st, domain.Errorf(domain.EInternal, "command: message %d of %s: %w", seq, conv, err)
	}
	return raw, st, nil
}

// Recall withdraws a message (the sender within the recall window, or a
// group admin who outranks the sender). Concurrent recalls and edits of one message are serialised by
// a compare-and-set of the message's cell.
func (s *Service) Recall(ctx context.Context, actor Actor, cmd domain.RecallMessage) (Result, error) {
	cmd.Actor = actor.User
	return s.changeMessage(ctx, actor, cmd.Conversation, cmd.Seq, func(st convState, ms domain.MessageState, now time.Time) ([]domain.Event, error) {
		return domain.DecideRecall(cmd, ms, now, s.policy, st.group)
	})
}

// Edit replaces a message's text (the sender, within the edit window).
func (s *Service) Edit(ctx context.Context, actor Actor, cmd domain.EditMessage) (Result, error) {
	cmd.Actor = actor.User
	return s.changeMessage(ctx, actor, cmd.Conversation, cmd.Seq, func(st convState, ms domain.MessageState, now time.Time) ([]domain.Event, error) {
		return domain.DecideEdit(cmd, ms, now, s.policy, st.rel, st.group)
	})
}

func (s *Service) changeMessage(ctx context.Context, actor Actor, conv domain.ConversationID, seq uint64,
	decide func(convState, domain.MessageState, time.Time) ([]domain.Event, error)) (Result, error) {
	if seq == 0 || seq > domain.MaxSeq {
		return Result{}, domain.Errorf(domain.EInvalid, "command: message seq %d is not in 1..%d", seq, domain.MaxSeq)
	}
	res, err := s.retry(ctx, func(fresh bool) (eventstore.AppendResult, error) {
		st, err := s.conversation(ctx, conv, fresh)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		raw, ms, err := s.messageState(ctx, conv, seq)
		if domain.ErrorCode(err) == domain.ENotFound {
			// No such message: beyond the last seq is a bad request.
			if last, lerr := s.lastSeq(ctx, conv); lerr == nil && seq > last {
				err = domain.CheckSeq("seq", seq, last)
			}
		}
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		now := s.cfg.Now()
		events, err := decide(st, ms, now)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		next := ms
		for _, e := range events {
			if err := next.Apply(e); err != nil {
				return eventstore.AppendResult{}, domain.Errorf(domain.EInternal, "command: %w", err)
			}
		}
		cell, err := next.MarshalBinary()
		if err != nil {
			return eventstore.AppendResult{}, domain.Errorf(domain.EInternal, "command: %w", err)
		}
		envs, err := s.envelopes(actor, string(conv), now, events)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		cells := make([]*eventstore.Cell, len(envs))
		cells[len(cells)-1] = &eventstore.Cell{Seq: seq, Expect: raw, Value: cell}
		return s.store.Append(ctx, eventstore.AppendRequest{
			PartitionKey: conv.PartitionKey(), Guards: []eventstore.Guard{st.guard},
			Streams: []eventstore.StreamAppend{{Aggregate: string(conv), Expected: eventstore.Any, Events: envs, Cells: cells}},
		})
	})
	return resultOf(res), err
}

// MarkRead records that the actor read a conversation up to seq, which must
// be 1..the conversation's last seq (EInvalid otherwise). Read markers belong
// to the reader (aggregate m/<user>, in the user's partition).
func (s *Service) MarkRead(ctx context.Context, actor Actor, conv domain.ConversationID, seq uint64) (Result, error) {
	return s.decideReader(ctx, actor, conv, func(last uint64) ([]domain.Event, error) {
		return domain.DecideMarkRead(domain.MarkRead{User: actor.User, Conversation: conv, Seq: seq}, last)
	})
}

// DeleteForMe hides message seq of a conversation from the actor only; seq
// must be 1..the conversation's last seq (EInvalid otherwise).
func (s *Service) DeleteForMe(ctx context.Context, actor Actor, conv domain.ConversationID, seq uint64) (Result, error) {
	return s.decideReader(ctx, actor, conv, func(last uint64) ([]domain.Event, error) {
		return domain.DecideDeleteForMe(domain.DeleteForMe{User: actor.User, Conversation: conv, Seq: seq}, last)
	})
}

// decideReader decides a change to the actor's reader aggregate from conv's
// last seq and appends the events.
func (s *Service) decideReader(ctx context.Context, actor Actor, conv domain.ConversationID, decide func(last uint64) ([]domain.Event, error)) (Result, error) {
	last, err := s.lastSeq(ctx, conv)
	if err != nil {
		return Result{}, err
	}
	events, err := decide(last)
	if err != nil {
		return Result{}, err
	}
	return s.appendReader(ctx, actor, events)
}

// lastSeq returns the seq of conv's last message (0: none, or a malformed
// id, which the domain reports), read from the head the append script keeps.
// Seqs only grow, so a marker checked against it stays valid.
func (s *Service) lastSeq(ctx context.Context, conv domain.ConversationID) (uint64, error) {
	if !conv.Valid() {
		return 0, nil
	}
	_, last, err := s.store.Version(ctx, conv.PartitionKey(), string(conv))
	if err != nil {
		return 0, domain.Errorf(domain.EUnavailable, "command: %w", err)
	}
	return last, nil
}

func (s *Service) appendReader(ctx context.Context, actor Actor, events []domain.Event) (Result, error) {
	agg := domain.ReaderID(actor.User)
	envs, err := s.envelopes(actor, agg, s.cfg.Now(), events)
	if err != nil {
		return Result{}, err
	}
	res, err := s.store.Append(ctx, eventstore.AppendRequest{
		PartitionKey: string(actor.User),
		Streams:      []eventstore.StreamAppend{{Aggregate: agg, Expected: eventstore.Any, Events: envs}},
	})
	if errors.Is(err, domain.ErrConflict) {
		// %v, not %w: this conflict is a bug, not a reason to retry, and a
		// kept cause would make errors.Is(err, domain.ErrConflict) hold.
		return Result{}, domain.Errorf(domain.EInternal, "command: reader append conflicted: %v", err)
	}
	return resultOf(res), err
}
