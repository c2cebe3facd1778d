// Package luascript builds Redis scripts from one embedded prelude of Lua
// functions (prelude.lua) and a script's own text, so that the functions
// several scripts need (the fencing-token comparison of the projectors'
// checkpoints) are written once.
package luascript

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

//go:embed prelude.lua
var prelude string

// Source returns the text of the script whose own text is body: the prelude,
// then body.
func Source(body string) string {
	return prelude + "\n" + body
}

// New returns the script whose own text is body, with the prelude before it.
// A Script is not changed after it is made and may be shared.
func New(body string) *redis.Script {
	return redis.NewScript(Source(body))
}
