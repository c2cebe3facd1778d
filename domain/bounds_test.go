package domain

import (
	"math"
	"testing"
	"time"
)

func TestTimeFromUnixMilli(t *testing.T) {
	tests := []struct {
		name string
		ms   int64
		want time.Time
		code Code
	}{
		{"zero is no time", 0, time.Time{}, ""},
		{"the epoch's first millisecond is a time", 1, time.UnixMilli(1).UTC(), ""},
		{"the last millisecond of 9999 is a time", MaxUnixMilli, time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), ""},
		{"the year 10000 is invalid", MaxUnixMilli + 1, time.Time{}, EInvalid},
		{"before the epoch is invalid", -1, time.Time{}, EInvalid},
		{"the largest int64 is invalid", math.MaxInt64, time.Time{}, EInvalid},
		{"the smallest int64 is invalid", math.MinInt64, time.Time{}, EInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := TimeFromUnixMilli("untilMs", tt.ms)
			wantCode(t, err, tt.code)
			if !got.Equal(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if !TimeInRange(time.UnixMilli(MaxUnixMilli)) || TimeInRange(time.UnixMilli(MaxUnixMilli+1)) || TimeInRange(time.UnixMilli(-1)) {
		t.Error("TimeInRange disagrees with TimeFromUnixMilli")
	}
}

func TestQueryArguments(t *testing.T) {
	conv := DirectConversation(uid(1), uid(2))
	t.Run("history", func(t *testing.T) {
		tests := []struct {
			name    string
			conv    ConversationID
			fromSeq uint64
			limit   uint32
			code    Code
		}{
			{"newest page with the default size", conv, 0, 0, ""},
			{"a full page from MaxSeq", conv, MaxSeq, MaxPage, ""},
			{"fromSeq 2^64-1 is invalid", conv, math.MaxUint64, 10, EInvalid},
			{"limit beyond a page is invalid", conv, 0, MaxPage + 1, EInvalid},
			{"malformed conversation is invalid", "d/x", 0, 0, EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q, err := NewHistoryPage(tt.conv, tt.fromSeq, false, tt.limit)
				wantCode(t, err, tt.code)
				if err == nil && (q.Limit < 1 || q.Limit > MaxPage) {
					t.Fatalf("limit %d", q.Limit)
				}
			})
		}
	})
	t.Run("conversations", func(t *testing.T) {
		tests := []struct {
			name     string
			beforeMs int64
			before   ConversationID
			limit    uint32
			code     Code
		}{
			{"first page", 0, "", 0, ""},
			{"next page", 1_700_000_000_000, conv, 20, ""},
			{"next page after conversations without messages", 0, conv, 20, ""},
			{"beforeMs 2^63-1 is invalid", math.MaxInt64, "", 0, EInvalid},
			{"beforeMs -2^63 is invalid", math.MinInt64, "", 0, EInvalid},
			{"malformed beforeConversationId is invalid", 1, "d/x", 0, EInvalid},
			{"limit beyond a page is invalid", 0, "", math.MaxUint32, EInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q, err := NewConversationsPage(tt.beforeMs, tt.before, tt.limit)
				wantCode(t, err, tt.code)
				if err == nil && q.After != (tt.beforeMs != 0 || tt.before != "") {
					t.Fatalf("After = %v", q.After)
				}
			})
		}
	})
}
