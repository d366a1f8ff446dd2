package bench

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// rssInterval is how often the sampler reads the resident memory.
const rssInterval = 20 * time.Millisecond

// rssSampler tracks the peak resident memory of this process while it
// runs, from /proc/self/statm. Elsewhere than on Linux it reports 0.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startRSS() *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	s.sample()
	s.wg.Go(func() {
		t := time.NewTicker(rssInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	})
	return s
}

func (s *rssSampler) sample() {
	if v := residentBytes(); v > s.peak.Load() {
		s.peak.Store(v)
	}
}

// finish stops sampling and returns the peak, in bytes.
func (s *rssSampler) finish() int64 {
	close(s.stop)
	s.wg.Wait()
	s.sample()
	return s.peak.Load()
}

var pageSize = int64(os.Getpagesize())

// residentBytes returns the resident set size of this process, or 0 when it
// cannot be read.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	// statm: size resident shared text lib data dt, in pages.
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * pageSize
}
