// Package backoff paces retries against a server that failed: exponential
// pauses with jitter, within bounds, and a sleep that ends with its context.
//
// It is a leaf that the parts which reconnect share, so that they pace
// alike: the relay, the consumer runtime and the RabbitMQ broker.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff. The pause after the n-th failure in a
// row is Min doubled n-1 times, at most Max, then drawn at random from its
// upper half: clients that failed together do not all retry together.
type Policy struct {
	Min, Max time.Duration
}

// Delay returns the pause after the n-th failure in a row (n >= 1).
func (p Policy) Delay(n int) time.Duration {
	d := p.Min
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(half+1)
}

// Sleep pauses for d, or until ctx ends. It reports whether the pause ran
// its course.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
