package domain

// The reader aggregate "m/<ulid>" holds one user's read markers and
// deletions. Its decisions need no state: a read marker that goes backwards is
// harmless because read models keep the highest seq, and deleting a message
// twice hides it twice. Its events are appended without an expected version.

// MarkRead marks everything up to Seq in Conversation as read by User.
type MarkRead struct {
	User         UserID
	Conversation ConversationID
	Seq          uint64
}

// DeleteForMe hides message Seq of Conversation from User only.
type DeleteForMe struct {
	User         UserID
	Conversation ConversationID
	Seq          uint64
}

// DecideMarkRead returns the ConversationRead that carries out cmd, given
// the conversation's last seq (0: no messages yet). It returns an EInvalid
// error for a malformed user or conversation id or a seq outside 1..last
// (CheckSeq), and EForbidden if User is not one of a direct conversation's
// pair. Group membership is not checked here: the caller knows the user's
// groups, and a marker for a group one has left only affects one's own read
// model.
func DecideMarkRead(cmd MarkRead, last uint64) ([]Event, error) {
	if err := checkReader(cmd.User, cmd.Conversation, cmd.Seq, last); err != nil {
		return nil, err
	}
	return []Event{ConversationRead{User: cmd.User, Conversation: cmd.Conversation, Seq: cmd.Seq}}, nil
}

// DecideDeleteForMe returns the MessageDeletedForMe that carries out cmd,
// given the conversation's last seq, with the errors of DecideMarkRead.
func DecideDeleteForMe(cmd DeleteForMe, last uint64) ([]Event, error) {
	if err := checkReader(cmd.User, cmd.Conversation, cmd.Seq, last); err != nil {
		return nil, err
	}
	return []Event{MessageDeletedForMe{User: cmd.User, Conversation: cmd.Conversation, Seq: cmd.Seq}}, nil
}

func checkReader(user UserID, conv ConversationID, seq, last uint64) error {
	if err := checkRef(conv, seq, user); err != nil {
		return err
	}
	if a, b, ok := conv.Members(); ok && user != a && user != b {
		return Errorf(EForbidden, "domain: %s is not in %s", user, conv)
	}
	return CheckSeq("seq", seq, last)
}
