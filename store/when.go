package store

import (
	"fmt"
	"strings"
	"time"
)

// ParseTime reads a time bound of a filter (Filter.Since, Filter.Until) as
// people give it, on the command line and in the HTTP API alike: an RFC 3339
// time (2026-11-27T08:00:00Z), or a duration meaning that long before now
// (15m, 24h, "90s ago"). "" is the zero time: no bound. The error says what
// is accepted; callers add the name of the flag or parameter.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimSpace(s), " ago")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s is neither an RFC 3339 time (2026-11-27T08:00:00Z) nor a duration before now (15m, 24h)", clipQuoted(s))
}

// clipQuoted quotes s for a message, cut to a readable length.
func clipQuoted(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
