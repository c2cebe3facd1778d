package gateway

import (
	"strconv"
	"strings"
)

// validInboxID reports whether s is a stream entry id "<ms>-<seq>".
func validInboxID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	digits := func(p string) bool {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
		_, err := strconv.ParseUint(p, 10, 64)
		return err == nil
	}
	return ok && digits(ms) && digits(seq)
}
