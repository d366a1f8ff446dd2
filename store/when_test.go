package store

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"2026-11-27T08:00:00Z", time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC), true},
		{"2026-11-27T08:00:00.5+01:00", time.Date(2026, 11, 27, 7, 0, 0, 5e8, time.UTC), true},
		{"15m", now.Add(-15 * time.Minute), true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"90s ago", now.Add(-90 * time.Second), true},
		{"-5m", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2026-11-27", time.Time{}, false},
	} {
		got, err := ParseTime(tc.in, now)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
