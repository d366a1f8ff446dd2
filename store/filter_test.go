package store

import (
	"testing"
	"time"
)

func TestProbesDays(t *testing.T) {
	at := time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		f    Filter
		want bool
	}{
		{"no window", Filter{}, false},
		{"since alone", Filter{Since: at}, true},
		{"until alone", Filter{Until: at}, true},
		{"an hour", Filter{Since: at, Until: at.Add(time.Hour)}, false},
		{"two days exactly", Filter{Since: at, Until: at.Add(ShortWindow)}, false},
		{"two days and a microsecond", Filter{Since: at, Until: at.Add(ShortWindow + time.Microsecond)}, true},
		{"ninety days", Filter{Since: at, Until: at.Add(90 * 24 * time.Hour)}, true},
	} {
		if got := c.f.ProbesDays(); got != c.want {
			t.Errorf("%s: ProbesDays() = %v, want %v", c.name, got, c.want)
		}
	}
}
