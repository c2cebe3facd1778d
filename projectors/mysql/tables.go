package mysql

// Table names of the read model. A rebuild writes the same tables with
// rebuildSuffix appended (created LIKE the live ones) and swaps them in.
const (
	tUsers         = "users"
	tDevices       = "user_devices"
	tRequests      = "friend_requests"
	tFriendships   = "friendships"
	tBlocks        = "blocks"
	tGroups        = "chat_groups"
	tMembers       = "group_members"
	tMessages      = "messages"
	tDeletions     = "message_deletions"
	tConversations = "conversations"
	tUserConvs     = "user_conversations"
	tPeriods       = "group_member_periods"
	tCheckpoints   = "read_model_checkpoints"
	tControl       = "read_model_control"
	tQuarantine    = "quarantine"

	rebuildSuffix = "__rebuild"
	oldSuffix     = "__old"
)

// modelTables are the read model's tables, in the order of
// schema.ReadModelTables (a test checks they agree).
var modelTables = []string{
	tUsers, tDevices, tRequests, tFriendships, tBlocks, tGroups, tMembers,
	tMessages, tDeletions, tConversations, tUserConvs, tPeriods,
}

// swapTables are the tables a rebuild replaces: the model and its
// checkpoints, so that a checkpoint always describes the tables beside it.
func swapTables() []string {
	return append(append([]string(nil), modelTables...), tCheckpoints)
}

// tables holds the names one ReadModel writes: the live tables or a
// rebuild's shadows.
type tables struct {
	users, devices, requests, friendships, blocks, groups, members string
	messages, deletions, convs, userConvs, checkpoints             string
	periods                                                        string
}

func newTables(suffix string) tables {
	return tables{
		users: tUsers + suffix, devices: tDevices + suffix, requests: tRequests + suffix,
		friendships: tFriendships + suffix, blocks: tBlocks + suffix, groups: tGroups + suffix,
		members: tMembers + suffix, messages: tMessages + suffix, deletions: tDeletions + suffix,
		convs: tConversations + suffix, userConvs: tUserConvs + suffix, checkpoints: tCheckpoints + suffix,
		periods: tPeriods + suffix,
	}
}
