package mysql

import "github.com/mpim/mpim/internal/readmodel"

// Table names of the projector's own bookkeeping; the read model's are
// internal/readmodel's. A rebuild writes the model's tables and the
// checkpoints with rebuildSuffix appended (created LIKE the live ones) and
// swaps them in.
const (
	tCheckpoints = "read_model_checkpoints"
	tControl     = "read_model_control"
	tQuarantine  = "quarantine"

	rebuildSuffix = "__rebuild"
	oldSuffix     = "__old"
)

// swapTables are the tables a rebuild replaces: the model and its
// checkpoints, so that a checkpoint always describes the tables beside it.
func swapTables() []string {
	return append(readmodel.Tables(), tCheckpoints)
}

// tables holds the names one ReadModel writes: the live tables or a
// rebuild's shadows.
type tables struct {
	users, devices, requests, friendships, blocks, groups, members string
	messages, deletions, convs, userConvs, checkpoints             string
	periods, mutes                                                 string
}

func newTables(suffix string) tables {
	return tables{
		users: readmodel.Users + suffix, devices: readmodel.Devices + suffix, requests: readmodel.Requests + suffix,
		friendships: readmodel.Friendships + suffix, blocks: readmodel.Blocks + suffix, groups: readmodel.Groups + suffix,
		members: readmodel.Members + suffix, messages: readmodel.Messages + suffix, deletions: readmodel.Deletions + suffix,
		convs: readmodel.Conversations + suffix, userConvs: readmodel.UserConversations + suffix, checkpoints: tCheckpoints + suffix,
		periods: readmodel.Periods + suffix, mutes: readmodel.Mutes + suffix,
	}
}
