// Package readmodel is the contract between the MySQL read-model projector
// (projectors/mysql), which writes the read-model tables, and the read side
// (query), which reads them. It names every table both sides use and encodes
// every stored value both sides interpret; both import it and neither
// imports the other. The columns themselves are described in the migrations
// (package schema).
//
// # Tables
//
//	users                  a user's profile (Users)
//	user_devices           a user's logged-in devices and their push tokens (Devices)
//	friend_requests        requests and their status (Requests)
//	friendships            one row per direction of a friendship (Friendships)
//	blocks                 who blocks whom (Blocks)
//	chat_groups            a group's name, owner, openness, member count (Groups)
//	group_members          a group's members with role and mute (Members)
//	messages               a conversation's messages by seq (Messages)
//	message_deletions      messages a user deleted for themself (Deletions)
//	conversations          a conversation's last message and version (Conversations)
//	user_conversations     a user's conversation list with unread counts (UserConversations)
//	group_member_periods   the seq ranges of each membership of a group (Periods)
//	conversation_mutes     a user's do-not-disturb per conversation (Mutes)
//
// Tables lists them in the order the migrations create them. They are
// derived from the log alone: a replay rebuilds exactly these, under the
// same names with a suffix, and swaps them in.
//
// # Stored values
//
// Ids are the domain's text forms: users "u/<ulid>", groups "g/<ulid>",
// conversations "d/<ulid>.<ulid>" (a pair's) or "c/<ulid>" (a group's, with
// the group's ULID, so SQL maps one to the other by swapping the prefix).
// Times are UTC DATETIME(3) taken from the events, never from the clock.
//
// user_devices.push_platform holds a domain.PushPlatform ("" without a
// token); conversation_mutes.muted_until is NULL for a mute until unmuted.
// The enum columns hold names: messages.kind (KindName, ParseKind),
// group_members.role (RoleName, ParseRole) and friend_requests.status
// (RequestPending, RequestAccepted, RequestDeclined). messages.attachment is
// NULL or the JSON document of EncodeAttachment, read back with
// DecodeAttachment.
//
// # Freshness
//
// The projector writes each partition of the log in order, one transaction
// per batch, so a reader sees a prefix of every partition's events, never
// half a batch; rows from different partitions may be at different points
// of the log. The tables lag the log by the projector's batch and linger:
// a query right after a command may not see it yet.
package readmodel
