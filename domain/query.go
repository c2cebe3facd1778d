package domain

import "time"

// Queries read the read models, not the log, but their arguments are checked
// here like a command's, so a bad argument is answered EInvalid before any
// database sees it (see the ranges in bounds.go).

// HistoryPage asks for a page of a conversation's messages: those before
// FromSeq, or the newest if FromSeq is 0 (backward), or those after FromSeq
// (Forward), at most Limit of them.
type HistoryPage struct {
	Conversation ConversationID
	FromSeq      uint64
	Forward      bool
	Limit        int
}

// NewHistoryPage checks a history query. It returns an EInvalid error for a
// malformed conversation id, a fromSeq beyond MaxSeq or a limit beyond
// MaxPage; limit 0 asks for DefaultPage.
func NewHistoryPage(conv ConversationID, fromSeq uint64, forward bool, limit uint32) (HistoryPage, error) {
	if !conv.Valid() {
		return HistoryPage{}, Errorf(EInvalid, "domain: invalid conversation id %q", conv)
	}
	if fromSeq > MaxSeq {
		return HistoryPage{}, Errorf(EInvalid, "domain: fromSeq %d is beyond the largest seq %d", fromSeq, MaxSeq)
	}
	n, err := CheckPage(limit)
	if err != nil {
		return HistoryPage{}, err
	}
	return HistoryPage{Conversation: conv, FromSeq: fromSeq, Forward: forward, Limit: n}, nil
}

// ConversationsPage asks for a page of a user's conversation list, most
// recent first: with After set, those whose last message came before Before,
// or at Before with an id below BeforeConversation (the last entry of the
// previous page); at most Limit of them.
type ConversationsPage struct {
	After              bool // a next page: Before and BeforeConversation are set
	Before             time.Time
	BeforeConversation ConversationID
	Limit              int
}

// NewConversationsPage checks a conversations query. beforeMs is
// milliseconds since the Unix epoch (0: none); it and beforeConversation,
// when either is set, name the last entry of the previous page. It returns
// an EInvalid error for a beforeMs out of the range of TimeFromUnixMilli, a
// malformed beforeConversation or a limit beyond MaxPage.
func NewConversationsPage(beforeMs int64, beforeConversation ConversationID, limit uint32) (ConversationsPage, error) {
	before, err := TimeFromUnixMilli("beforeMs", beforeMs)
	if err != nil {
		return ConversationsPage{}, err
	}
	if beforeConversation != "" && !beforeConversation.Valid() {
		return ConversationsPage{}, Errorf(EInvalid, "domain: invalid beforeConversationId %q", beforeConversation)
	}
	n, err := CheckPage(limit)
	if err != nil {
		return ConversationsPage{}, err
	}
	if before.IsZero() {
		before = time.Unix(0, 0).UTC()
	}
	return ConversationsPage{After: beforeMs != 0 || beforeConversation != "", Before: before,
		BeforeConversation: beforeConversation, Limit: n}, nil
}
