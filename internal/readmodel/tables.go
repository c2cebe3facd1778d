package readmodel

// Names of the read-model tables.
const (
	Users             = "users"
	Devices           = "user_devices"
	Requests          = "friend_requests"
	Friendships       = "friendships"
	Blocks            = "blocks"
	Groups            = "chat_groups"
	Members           = "group_members"
	Messages          = "messages"
	Deletions         = "message_deletions"
	Conversations     = "conversations"
	UserConversations = "user_conversations"
	Periods           = "group_member_periods"
	Mutes             = "conversation_mutes"
)

// Tables returns the read-model tables in the order the migrations create
// them. The caller may modify the slice.
func Tables() []string {
	return []string{
		Users, Devices, Requests, Friendships, Blocks, Groups, Members,
		Messages, Deletions, Conversations, UserConversations, Periods, Mutes,
	}
}
