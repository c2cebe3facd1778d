// Package redisckpt keeps a projector's checkpoints and fencing tokens in
// Redis, for the projectors whose read models live there. Each partition N of
// projector name has one hash:
//
//	<prefix>proj:{<name>:pN}:ckpt   fields pos (the checkpoint, "<ms>-<seq>", absent before the first batch)
//	                                and token (the fencing token of the latest owner)
//
// The hash tag {<name>:pN} is the partition's: a projector keeps the other
// state of the partition under Store.Tag, in the same hash slot, so that one
// script can check the token, compare-and-set the checkpoint and write that
// state atomically, on Redis Cluster too.
//
// Store.Claim only ever moves the token forward. Moving the checkpoint is the
// projector's own script, which sets pos and token together once the stored
// token is not newer than the batch's and pos is still the batch's After.
// Such scripts answer in the form Store.Verdict reads:
//
//	{"O", ...}    done; the rest of the reply is the script's own
//	{"F", token}  a newer token is stored: projectors.ErrFenced
//	{"M", pos}    the token is current but the checkpoint is pos, not After:
//	              projectors.ErrCheckpointMoved
//
// Tokens travel as decimal strings without leading zeros (FormatToken) and
// scripts compare them by length, then as strings (the function newer in
// claim.lua), never as Lua numbers: those are doubles, exact only up to 2^53,
// and fencing tokens are uint64.
package redisckpt
