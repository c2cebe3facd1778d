package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"strings"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// convRow is a conversations row: the conversation aggregate's last
// message and version.
type convRow struct {
	lastSeq                 uint64
	lastAt                  ms
	lastSender, lastPreview string
	version                 uint64
	dirty                   bool
}

// msgKey identifies a message.
type msgKey struct {
	conv string
	seq  uint64
}

// msgRow is a messages row.
type msgRow struct {
	eventID                     []byte
	sender, device, clientMsgID string
	kind, body                  string
	attachment                  sql.NullString // JSON
	sentAt, edited, recalled    ms
	version                     uint64
	isNew, dirty                bool
}

// ucKey identifies a user_conversations row.
type ucKey struct{ user, conv string }

// ucDelta is what a batch contributes to a user_conversations row. Rows are
// written by two partitions (the conversation's, with messages, and the
// user's, with read markers), so a delta never replaces a row: it raises
// last_seq and read_seq (GREATEST), takes the last-message columns when its
// last_seq is not behind the row's (only the conversation's partition sends
// a last_seq, in log order), and recomputes unread_count from the result.
// Applying deltas in any interleaving yields the same row.
type ucDelta struct {
	lastSeq                 uint64
	lastAt                  ms
	lastSender, lastPreview string
	readSeq                 uint64
	updated                 ms
}

// delKey identifies a message_deletions row.
type delKey struct {
	user, conv string
	seq        uint64
}

// maxBody is the capacity of a MEDIUMTEXT column.
const maxBody = 1<<24 - 1

func (a *applier) loadConvs(ctx context.Context) error {
	if len(a.convs) == 0 {
		return nil
	}
	ids := keyTuples(a.convs, func(id string) []any { return []any{id} })
	return a.queryKeys(ctx, ids,
		inList("SELECT conversation_id, last_seq, last_message_at, last_sender, last_preview, version FROM "+a.t.convs+" WHERE conversation_id"),
		func(rows *sql.Rows) error {
			var id string
			c := &convRow{}
			if err := rows.Scan(&id, &c.lastSeq, c.lastAt.scan(), &c.lastSender, &c.lastPreview, &c.version); err != nil {
				return err
			}
			a.convs[id] = c
			return nil
		})
}

func (a *applier) loadMsgs(ctx context.Context) error {
	if len(a.msgs) == 0 {
		return nil
	}
	keys := keyTuples(a.msgs, func(k msgKey) []any { return []any{k.conv, k.seq} })
	return a.queryKeys(ctx, keys,
		orList("SELECT conversation_id, seq, event_id, sender_id, device_id, client_msg_id, kind, body, attachment,"+
			" sent_at, edited_at, recalled_at, version FROM "+a.t.messages+" WHERE", "conversation_id", "seq"),
		func(rows *sql.Rows) error {
			var k msgKey
			m := &msgRow{}
			if err := rows.Scan(&k.conv, &k.seq, &m.eventID, &m.sender, &m.device, &m.clientMsgID, &m.kind, &m.body, &m.attachment,
				m.sentAt.scan(), m.edited.scan(), m.recalled.scan(), &m.version); err != nil {
				return err
			}
			a.msgs[k] = m
			return nil
		})
}

// applyConversation applies an event of a conversation aggregate. Every such
// event moves the conversation's version, quarantined or not, so that the
// next one is checked against it.
func (a *applier) applyConversation(it *item) error {
	id, v := it.meta.Aggregate, it.meta.Version
	cid := domain.ConversationID(id)
	if !cid.Valid() {
		return a.quarantine("%s is not a conversation aggregate", id)
	}
	c := a.convs[id]
	if c == nil {
		c = &convRow{lastAt: nullTime}
		a.convs[id] = c
	}
	if c.version == 0 && v != 1 {
		c.version, c.dirty = v, true
		if e, ok := it.ev.(domain.MessageSent); ok && e.Seq <= domain.MaxSeq {
			c.lastSeq = max(c.lastSeq, e.Seq)
		}
		return a.quarantine("conversation %s has no events before version %d", id, v)
	}
	if err := a.follow("conversation", id, c.version, v); err != nil {
		return err
	}
	c.version, c.dirty = v, true
	switch e := it.ev.(type) {
	case domain.MessageSent:
		return a.send(cid, c, e)
	case domain.MessageRecalled:
		return a.changeMessage(cid, c, e.Seq, func(m *msgRow) error {
			switch {
			case m.recalled != nullTime:
				return a.quarantine("message %d of %s is already recalled", e.Seq, id)
			case string(e.Sender) != m.sender:
				return a.quarantine("recall of message %d of %s names sender %s, it was sent by %s", e.Seq, id, e.Sender, m.sender)
			}
			m.recalled, m.body, m.attachment = a.at(), "", sql.NullString{}
			return nil
		})
	case domain.MessageEdited:
		return a.changeMessage(cid, c, e.Seq, func(m *msgRow) error {
			switch {
			case m.recalled != nullTime:
				return a.quarantine("edit of recalled message %d of %s", e.Seq, id)
			case string(e.By) != m.sender:
				return a.quarantine("edit of message %d of %s by %s, it was sent by %s", e.Seq, id, e.By, m.sender)
			case len(e.Text) > maxBody || !fitsText(e.Text, maxBody):
				return a.quarantine("edited text does not fit its column")
			}
			m.body, m.edited = e.Text, a.at()
			return nil
		})
	}
	return nil
}

// send adds a message to the history and delivers it to the conversation's
// lists: the pair of a direct conversation, the group's members at this
// point of the log for a group's. The sender has read their own message.
func (a *applier) send(cid domain.ConversationID, c *convRow, e domain.MessageSent) error {
	it, id := a.cur, string(cid)
	kind := readmodel.KindName(e.Kind)
	switch {
	case e.Conversation != cid:
		return a.quarantine("message of %s appended to %s", e.Conversation, id)
	case e.Seq <= c.lastSeq:
		return a.quarantine("seq %d is not after the last seq %d of %s", e.Seq, c.lastSeq, id)
	case e.Seq > domain.MaxSeq:
		return a.quarantine("seq %d of %s is beyond the largest seq %d", e.Seq, id, domain.MaxSeq)
	case !fitsDatetime(e.SentAt):
		return a.quarantine("message %d of %s sent at %d ms, a time beyond the DATETIME column", e.Seq, id, e.SentAt.UnixMilli())
	case kind == "":
		return a.quarantine("unknown message kind %d", e.Kind)
	case !e.Sender.Valid() || !fitsBytes(string(e.Device), 64) || !fitsBytes(e.ClientMsgID, 64):
		return a.quarantine("message has a malformed sender, device or client message id")
	case len(e.Text) > maxBody || !fitsText(e.Text, maxBody):
		return a.quarantine("message text does not fit its column")
	case a.msgs[msgKey{id, e.Seq}] != nil:
		return a.quarantine("message %d of %s exists already", e.Seq, id)
	}
	var members map[string]memberRow
	x, y, direct := cid.Members()
	if gid, ok := cid.Group(); ok {
		g := a.groups[string(gid)]
		if g == nil {
			return a.quarantine("message to unknown group %s", gid)
		}
		members = g.members
	} else if e.Sender != x && e.Sender != y {
		return a.quarantine("sender %s is not in %s", e.Sender, id)
	}
	att, err := attachmentJSON(e.Attachment)
	if err != nil {
		return a.quarantine("attachment: %v", err)
	}
	t := a.at()
	sentAt := t
	if !e.SentAt.IsZero() {
		sentAt = msOf(e.SentAt)
	}
	eventID := it.meta.ID
	a.msgs[msgKey{id, e.Seq}] = &msgRow{
		eventID: eventID[:], sender: string(e.Sender), device: string(e.Device), clientMsgID: e.ClientMsgID,
		kind: kind, body: e.Text, attachment: att, sentAt: sentAt, edited: nullTime, recalled: nullTime,
		version: it.meta.Version, isNew: true, dirty: true,
	}
	c.lastSeq, c.lastAt, c.lastSender, c.lastPreview = e.Seq, sentAt, string(e.Sender), preview(kind, e.Text)
	sender := string(e.Sender)
	deliver := func(u string) {
		var read uint64
		if u == sender {
			read = e.Seq
		}
		a.touchUC(u, id, c, read, t)
	}
	if direct {
		deliver(string(x))
		deliver(string(y))
		return nil
	}
	for u := range members {
		deliver(u)
	}
	return nil
}

// changeMessage applies a recall or edit (change) to message seq. A change
// of the conversation's last message also changes the lists' preview.
func (a *applier) changeMessage(cid domain.ConversationID, c *convRow, seq uint64, change func(*msgRow) error) error {
	id, v := string(cid), a.cur.meta.Version
	m := a.msgs[msgKey{id, seq}]
	if m == nil {
		return a.quarantine("message %d of %s does not exist", seq, id)
	}
	if v <= m.version {
		return a.follow("message of", id, m.version, v)
	}
	n := len(a.quarantined)
	if err := change(m); err != nil || len(a.quarantined) > n {
		return err
	}
	m.version, m.dirty = v, true
	if seq != c.lastSeq {
		return nil
	}
	c.lastPreview = ""
	if m.recalled == nullTime {
		c.lastPreview = preview(m.kind, m.body)
	}
	t := a.at()
	if x, y, ok := cid.Members(); ok {
		a.touchUC(string(x), id, c, 0, t)
		a.touchUC(string(y), id, c, 0, t)
		return nil
	}
	gid, _ := cid.Group()
	if g := a.groups[string(gid)]; g != nil {
		for u, m := range g.members {
			if m.from < seq { // members who joined after it never had it
				a.touchUC(u, id, c, 0, t)
			}
		}
	}
	return nil
}

// applyReader applies an event of a reader aggregate ("m/<ulid>"): read
// markers and deletions for the reader's user, and mutes (applyMute). Whether the message exists is
// not checked: it lives in another partition, and the result must not depend
// on the order partitions are processed in.
func (a *applier) applyReader(it *item) error {
	agg := it.meta.Aggregate
	reader, ok := readerOf(agg)
	if !ok {
		return a.quarantine("%s is not a reader aggregate", agg)
	}
	var user domain.UserID
	var conv domain.ConversationID
	var seq uint64
	switch e := it.ev.(type) {
	case domain.ConversationRead:
		user, conv, seq = e.User, e.Conversation, e.Seq
	case domain.MessageDeletedForMe:
		user, conv, seq = e.User, e.Conversation, e.Seq
	case domain.ConversationMuted, domain.ConversationUnmuted:
		return a.applyMute(reader, e)
	}
	if user != reader || !conv.Valid() || seq == 0 || seq > domain.MaxSeq {
		return a.quarantine("reader %s: malformed marker for %s in %s at %d (seqs are 1..%d)", agg, user, conv, seq, domain.MaxSeq)
	}
	if x, y, ok := conv.Members(); ok && user != x && user != y {
		return a.quarantine("%s is not in %s", user, conv)
	}
	t := a.at()
	if _, ok := it.ev.(domain.ConversationRead); ok {
		a.touchUC(string(user), string(conv), nil, seq, t)
		return nil
	}
	k := delKey{string(user), string(conv), seq}
	if _, ok := a.deletions[k]; !ok {
		a.deletions[k] = t
	}
	return nil
}

// readerOf returns the user of reader aggregate agg ("m/<ulid>").
func readerOf(agg string) (domain.UserID, bool) {
	ulid, ok := strings.CutPrefix(agg, "m/")
	user := domain.UserID("u/" + ulid)
	return user, ok && user.Valid()
}

// touchUC adds to the delta of user's row of conv: last (if not nil) as the
// conversation's last message, readSeq as a read marker, at as a change time.
func (a *applier) touchUC(user, conv string, last *convRow, readSeq uint64, at ms) {
	k := ucKey{user, conv}
	d := a.uc[k]
	if d == nil {
		d = &ucDelta{lastAt: nullTime, updated: at}
		a.uc[k] = d
	}
	if last != nil && last.lastSeq > 0 && last.lastSeq >= d.lastSeq {
		d.lastSeq, d.lastAt, d.lastSender, d.lastPreview = last.lastSeq, last.lastAt, last.lastSender, last.lastPreview
	}
	d.readSeq = max(d.readSeq, readSeq)
	d.updated = max(d.updated, at)
}

func (a *applier) writeConvs(ctx context.Context) error {
	w := a.multi("INSERT INTO "+a.t.convs+" (conversation_id, last_seq, last_message_at, last_sender, last_preview, version) VALUES ",
		" ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq), last_message_at = VALUES(last_message_at),"+
			" last_sender = VALUES(last_sender), last_preview = VALUES(last_preview), version = VALUES(version)", 6)
	for _, id := range sortedKeys(a.convs, cmpString) {
		c := a.convs[id]
		if c == nil || !c.dirty {
			continue
		}
		if err := w.add(ctx, a.tx, id, c.lastSeq, c.lastAt.sql(), c.lastSender, c.lastPreview, c.version); err != nil {
			return err
		}
	}
	return w.flush(ctx, a.tx)
}

const msgCols = " (conversation_id, seq, event_id, sender_id, device_id, client_msg_id, kind, body, attachment," +
	" sent_at, edited_at, recalled_at, version) VALUES "

func (a *applier) writeMsgs(ctx context.Context) error {
	if len(a.msgs) == 0 {
		return nil
	}
	// New messages are plain inserts: a message that exists already fails
	// the batch instead of being overwritten.
	inserts := a.multi("INSERT INTO "+a.t.messages+msgCols, "", 13)
	updates := a.multi("INSERT INTO "+a.t.messages+msgCols,
		" ON DUPLICATE KEY UPDATE body = VALUES(body), attachment = VALUES(attachment), edited_at = VALUES(edited_at),"+
			" recalled_at = VALUES(recalled_at), version = VALUES(version)", 13)
	keys := sortedKeys(a.msgs, func(x, y msgKey) int { return cmp.Or(cmp.Compare(x.conv, y.conv), cmp.Compare(x.seq, y.seq)) })
	for _, k := range keys {
		m := a.msgs[k]
		if m == nil || !m.dirty {
			continue
		}
		w := updates
		if m.isNew {
			w = inserts
		}
		var att any
		if m.attachment.Valid {
			att = m.attachment.String
		}
		if err := w.add(ctx, a.tx, k.conv, k.seq, m.eventID, m.sender, m.device, m.clientMsgID, m.kind, m.body, att,
			m.sentAt.sql(), m.edited.sql(), m.recalled.sql(), m.version); err != nil {
			return err
		}
	}
	if err := inserts.flush(ctx, a.tx); err != nil {
		return err
	}
	return updates.flush(ctx, a.tx)
}

func (a *applier) writeUserConvs(ctx context.Context) error {
	const lastIsNewer = "IF(VALUES(last_seq) > 0 AND VALUES(last_seq) >= last_seq, "
	w := a.multi("INSERT INTO "+a.t.userConvs+" (user_id, conversation_id, last_seq, last_message_at, last_sender, last_preview,"+
		" read_seq, unread_count, updated_at) VALUES ",
		// Assignments run left to right, each seeing the ones before: the
		// last-message columns compare with the old last_seq, unread_count
		// uses the new last_seq and read_seq.
		" ON DUPLICATE KEY UPDATE"+
			" last_message_at = "+lastIsNewer+"VALUES(last_message_at), last_message_at),"+
			" last_sender = "+lastIsNewer+"VALUES(last_sender), last_sender),"+
			" last_preview = "+lastIsNewer+"VALUES(last_preview), last_preview),"+
			" last_seq = GREATEST(last_seq, VALUES(last_seq)),"+
			" read_seq = GREATEST(read_seq, VALUES(read_seq)),"+
			" unread_count = IF(last_seq > read_seq, last_seq - read_seq, 0),"+
			" updated_at = GREATEST(updated_at, VALUES(updated_at))", 9)
	byKey := func(x, y ucKey) int { return cmp.Or(cmp.Compare(x.user, y.user), cmp.Compare(x.conv, y.conv)) }
	return writeRows(ctx, a.tx, w, a.uc, byKey, func(k ucKey, d *ucDelta) []any {
		var unread uint64
		if d.lastSeq > d.readSeq {
			unread = d.lastSeq - d.readSeq
		}
		return []any{k.user, k.conv, d.lastSeq, d.lastAt.sql(), d.lastSender, d.lastPreview, d.readSeq, unread, d.updated.sql()}
	})
}

func (a *applier) writeDeletions(ctx context.Context) error {
	w := a.multi("INSERT INTO "+a.t.deletions+" (user_id, conversation_id, seq, deleted_at) VALUES ",
		" ON DUPLICATE KEY UPDATE deleted_at = deleted_at", 4)
	return writeRows(ctx, a.tx, w, a.deletions, func(x, y delKey) int {
		return cmp.Or(cmp.Compare(x.user, y.user), cmp.Compare(x.conv, y.conv), cmp.Compare(x.seq, y.seq))
	}, func(k delKey, at ms) []any {
		return []any{k.user, k.conv, k.seq, at.sql()}
	})
}

// preview is the text a conversation list shows for a message.
func preview(kind, text string) string {
	if t := strings.Join(strings.Fields(text), " "); t != "" {
		return truncateRunes(t, 100)
	}
	switch kind {
	case "image":
		return "[image]"
	case "file":
		return "[file]"
	}
	return "[message]"
}

// attachmentJSON returns the messages.attachment column of att: NULL
// without one.
func attachmentJSON(att *domain.Attachment) (sql.NullString, error) {
	if att == nil {
		return sql.NullString{}, nil
	}
	doc, err := readmodel.EncodeAttachment(*att)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: doc, Valid: true}, nil
}
