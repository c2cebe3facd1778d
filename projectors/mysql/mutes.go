package mysql

import (
	"cmp"
	"context"

	"github.com/mpim/mpim/domain"
)

// muteRow is a conversation_mutes row.
type muteRow struct {
	until ms // nullTime: until unmuted
	at    ms
}

// applyMute applies ConversationMuted or ConversationUnmuted (ev) of
// reader's aggregate. Reader events of a user are all in the user's
// partition, and only they write conversation_mutes, so the last one of
// the batch decides the row: nothing is loaded.
func (a *applier) applyMute(reader domain.UserID, ev domain.Event) error {
	var row *muteRow
	var user domain.UserID
	var conv domain.ConversationID
	switch e := ev.(type) {
	case domain.ConversationMuted:
		user, conv = e.User, e.Conversation
		row = &muteRow{until: nullTime, at: a.at()}
		if !e.Until.IsZero() {
			if !fitsDatetime(e.Until) {
				return a.quarantine("mute of %s by %s ends at %d ms, beyond the DATETIME columns", conv, user, e.Until.UnixMilli())
			}
			row.until = msOf(e.Until)
		}
	case domain.ConversationUnmuted:
		user, conv = e.User, e.Conversation
	}
	if user != reader || !conv.Valid() {
		return a.quarantine("reader %s: malformed mute of %q by %s", reader, conv, user)
	}
	a.mutes[ucKey{string(user), string(conv)}] = row
	return nil
}

// writeMutes upserts the muted rows and deletes the unmuted ones.
func (a *applier) writeMutes(ctx context.Context) error {
	if len(a.mutes) == 0 {
		return nil
	}
	byKey := func(x, y ucKey) int { return cmp.Or(cmp.Compare(x.user, y.user), cmp.Compare(x.conv, y.conv)) }
	var unmuted [][]any
	for _, k := range sortedKeys(a.mutes, byKey) {
		if a.mutes[k] == nil {
			unmuted = append(unmuted, []any{k.user, k.conv})
		}
	}
	if err := a.deleteKeys(ctx, a.t.mutes, []string{"user_id", "conversation_id"}, unmuted); err != nil {
		return err
	}
	w := a.multi("INSERT INTO "+a.t.mutes+" (user_id, conversation_id, muted_until, muted_at) VALUES ",
		" ON DUPLICATE KEY UPDATE muted_until = VALUES(muted_until), muted_at = VALUES(muted_at)", 4)
	return writeRows(ctx, a.tx, w, a.mutes, byKey, func(k ucKey, m *muteRow) []any {
		if m == nil {
			return nil
		}
		return []any{k.user, k.conv, m.until.sql(), m.at.sql()}
	})
}
