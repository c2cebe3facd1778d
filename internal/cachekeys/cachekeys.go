// Package cachekeys names the Redis read models that the cache projector
// (projectors/cache) writes and the read side (query) reads for the
// gateway's hot paths. It is the contract between the two, so neither
// imports the other.
//
// # Keys
//
// All keys start with the deployment's prefix and "cache:". A user's keys
// share the hash tag "{<user>}" (also used by the user's inbox), a group's
// keys the tag "{<group>}".
//
//	<prefix>cache:{<user>}:profile     hash: username, name (display name), avatar (URL, "" if none)
//	<prefix>cache:{<user>}:friends     set of user ids: the user's friends
//	<prefix>cache:{<user>}:blocks      set of user ids the user blocks
//	<prefix>cache:{<user>}:blockedby   set of user ids that block the user
//	<prefix>cache:{<user>}:groups      set of group ids the user is a member of
//	<prefix>cache:{<group>}:info       hash: name, owner (user id), open ("1"/"0"), dissolved ("1"/"0")
//	<prefix>cache:{<group>}:members    hash: user id -> role ("owner", "admin", "member")
//	<prefix>cache:{<group>}:muted      hash: user id -> end of the mute in Unix ms ("0": indefinitely)
//	<prefix>cache:{<user>}:push        hash: device id -> the device's push token (EncodePushToken)
//	<prefix>cache:{<user>}:dnd         hash: conversation id -> end of the user's do-not-disturb in Unix ms ("0": until unmuted)
//
// Written only by the cache projector, from the log, in log order per
// partition; read by query (and mpimctl). No key has a TTL; the whole
// model is deleted and rebuilt by a replay (the projector's Reset). Values
// follow the domain: a block ends the friendship in both friend sets; a
// dissolved group keeps its members and is marked dissolved in its info, so
// "my groups" lists it until the client hides it; a mute past its end stays
// in muted until lifted, so readers compare the end with their clock (so
// does a do-not-disturb in dnd); a device's push token goes with the
// device's logout.
//
// The model is eventually consistent with the log: it lags the log by the
// projector's batch, and a reader must not decide anything a command
// decides (the write side re-checks membership, blocks and mutes).
package cachekeys

import (
	"encoding/json"
	"fmt"

	"github.com/mpim/mpim/domain"
)

// Hash fields of the profile and group info hashes.
const (
	ProfileUsername = "username"
	ProfileName     = "name"
	ProfileAvatar   = "avatar"

	GroupName      = "name"
	GroupOwner     = "owner"
	GroupOpen      = "open"
	GroupDissolved = "dissolved"
)

// Keys builds the cache key names of one deployment.
type Keys struct {
	prefix string
}

// New returns the Keys of the deployment whose keys start with prefix.
func New(prefix string) Keys { return Keys{prefix: prefix} }

// Namespace returns the prefix every cache key starts with: "<prefix>cache:".
func (k Keys) Namespace() string { return k.prefix + "cache:" }

func (k Keys) user(u domain.UserID, what string) string {
	return k.prefix + "cache:{" + string(u) + "}:" + what
}

func (k Keys) group(g domain.GroupID, what string) string {
	return k.prefix + "cache:{" + string(g) + "}:" + what
}

// Profile returns the key of user's profile hash.
func (k Keys) Profile(u domain.UserID) string { return k.user(u, "profile") }

// Friends returns the key of user's friend set.
func (k Keys) Friends(u domain.UserID) string { return k.user(u, "friends") }

// Blocks returns the key of the set of users u blocks.
func (k Keys) Blocks(u domain.UserID) string { return k.user(u, "blocks") }

// BlockedBy returns the key of the set of users that block u.
func (k Keys) BlockedBy(u domain.UserID) string { return k.user(u, "blockedby") }

// Groups returns the key of the set of groups u is a member of.
func (k Keys) Groups(u domain.UserID) string { return k.user(u, "groups") }

// GroupInfo returns the key of a group's info hash.
func (k Keys) GroupInfo(g domain.GroupID) string { return k.group(g, "info") }

// Members returns the key of a group's member -> role hash.
func (k Keys) Members(g domain.GroupID) string { return k.group(g, "members") }

// Muted returns the key of a group's member -> mute end hash.
func (k Keys) Muted(g domain.GroupID) string { return k.group(g, "muted") }

// Push returns the key of user's device -> push token hash.
func (k Keys) Push(u domain.UserID) string { return k.user(u, "push") }

// DoNotDisturb returns the key of user's conversation -> mute end hash.
func (k Keys) DoNotDisturb(u domain.UserID) string { return k.user(u, "dnd") }

// storedPushToken is the JSON of a push token in the push hash.
type storedPushToken struct {
	Platform string `json:"p"`
	Token    string `json:"t"`
	AppID    string `json:"a,omitempty"`
}

// EncodePushToken returns the value of t in the push hash: a JSON object
// {"p": platform, "t": token, "a": app id (left out when empty)}.
func EncodePushToken(t domain.PushToken) string {
	b, _ := json.Marshal(storedPushToken{Platform: string(t.Platform), Token: t.Token, AppID: t.AppID}) // strings only: cannot fail
	return string(b)
}

// DecodePushToken reads a value of the push hash. It fails on a value that
// is not EncodePushToken's.
func DecodePushToken(v string) (domain.PushToken, error) {
	var s storedPushToken
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return domain.PushToken{}, fmt.Errorf("cachekeys: push token %.40q: %w", v, err)
	}
	t := domain.PushToken{Platform: domain.PushPlatform(s.Platform), Token: s.Token, AppID: s.AppID}
	if err := t.Check(); err != nil {
		return domain.PushToken{}, fmt.Errorf("cachekeys: stored push token: %w", err)
	}
	return t, nil
}
