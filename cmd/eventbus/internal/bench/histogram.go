package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram records durations in log-linear buckets: each power of two of
// nanoseconds is split into subBuckets equal parts, so a quantile is off by
// less than 1/subBuckets of its value. Recording is lock-free and its
// memory is fixed, whatever the number of samples: a run of millions of
// events must not grow the resident memory it measures.
type histogram struct {
	counts [numBuckets]atomic.Int64
	total  atomic.Int64
}

const (
	subBits    = 7
	subBuckets = 1 << subBits // 128: quantiles within 0.8%
	// Durations up to 2^40 ns (18 minutes) are kept; longer ones count
	// in the last bucket.
	maxExp     = 40
	numBuckets = (maxExp - subBits + 2) * subBuckets
)

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < subBuckets {
		return int(v) // exact below 128 ns
	}
	exp := bits.Len64(v) - 1 // v in [2^exp, 2^(exp+1))
	if exp > maxExp {
		return numBuckets - 1
	}
	sub := (v >> (exp - subBits)) & (subBuckets - 1)
	return (exp-subBits+1)*subBuckets + int(sub)
}

// bucketValue returns the middle of bucket i.
func bucketValue(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	exp := i/subBuckets + subBits - 1
	sub := uint64(i % subBuckets)
	width := uint64(1) << (exp - subBits)
	low := uint64(1)<<exp + sub*width
	return time.Duration(low + width/2)
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(d)].Add(1)
	h.total.Add(1)
}

func (h *histogram) count() int64 { return h.total.Load() }

// quantiles returns the values below which the fractions qs of the samples
// fall, in the order of qs (which must be ascending).
func (h *histogram) quantiles(qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	n := h.total.Load()
	if n == 0 {
		return out
	}
	var seen int64
	j := 0
	for i := range h.counts {
		seen += h.counts[i].Load()
		for j < len(qs) && float64(seen) >= qs[j]*float64(n) {
			out[j] = bucketValue(i)
			j++
		}
		if j == len(qs) {
			break
		}
	}
	for ; j < len(qs); j++ { // samples counted after total was read
		out[j] = bucketValue(numBuckets - 1)
	}
	return out
}
