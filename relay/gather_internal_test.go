package relay

import (
	"testing"
	"time"
)

// TestGatherAdaptsToTheRate: the gather is the time the rate read brings
// gatherTarget events in, within [Gather, MaxGather]; an empty read and a
// negative Gather keep the configured one.
func TestGatherAdaptsToTheRate(t *testing.T) {
	r := &worker{cfg: Config{Gather: 2 * time.Millisecond, MaxGather: 8 * time.Millisecond}}
	for _, tc := range []struct {
		n     int
		since time.Duration
		want  time.Duration
	}{
		{0, time.Second, 2 * time.Millisecond},             // nothing read: the least
		{1, 10 * time.Millisecond, 8 * time.Millisecond},   // 100/s: the most
		{64, 5 * time.Millisecond, 5 * time.Millisecond},   // 12,800/s: 64 in 5ms
		{32, 2 * time.Millisecond, 4 * time.Millisecond},   // 16,000/s: 64 in 4ms
		{1000, 2 * time.Millisecond, 2 * time.Millisecond}, // faster: the least
		{5, time.Hour, 8 * time.Millisecond},               // after an idle hour
	} {
		if got := r.nextGather(tc.n, tc.since); got != tc.want {
			t.Errorf("nextGather(%d, %s) = %s, want %s", tc.n, tc.since, got, tc.want)
		}
	}
	r.cfg.Gather = -1
	if got := r.nextGather(10, time.Millisecond); got != -1 {
		t.Errorf("with a negative Gather: %s, want it kept", got)
	}
}
