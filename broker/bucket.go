package broker

import (
	"math/bits"
	"strconv"

	"github.com/edupulse/eventbus/event"
)

// Buckets is how many buckets the bus splits streams into for sharded
// consumer groups. Every message the relay and replay publish carries its
// event's bucket, event.PartitionOf(subject, id, Buckets), in HeaderBucket;
// a group of P shards binds shard i to the buckets b with b % P == i. It
// never changes between releases: bindings on the broker depend on it.
const Buckets = 64

// HeaderBucket carries a message's bucket, a decimal string in [0, Buckets).
// Unlike the bus's other headers it has no "x-" prefix: RabbitMQ's headers
// exchange ignores binding arguments that start with "x-", and it routes
// on this one.
const HeaderBucket = "eventbus-bucket"

// BucketSet is a set of buckets: bit b is bucket b. The zero set is empty.
type BucketSet uint64

// BucketSetOf returns the set of the given buckets; those outside
// [0, Buckets) are ignored.
func BucketSetOf(buckets ...int) BucketSet {
	var s BucketSet
	for _, b := range buckets {
		if b >= 0 && b < Buckets {
			s |= 1 << uint(b)
		}
	}
	return s
}

// ShardBuckets returns the buckets of shard i when the buckets are split
// over n shards: those b with b % n == i. n must be in [1, Buckets].
func ShardBuckets(i, n int) BucketSet {
	var s BucketSet
	for b := i; b < Buckets && n > 0; b += n {
		s |= 1 << uint(b)
	}
	return s
}

// Has reports whether bucket b is in s.
func (s BucketSet) Has(b int) bool { return b >= 0 && b < Buckets && s&(1<<uint(b)) != 0 }

// Len returns how many buckets s holds.
func (s BucketSet) Len() int { return bits.OnesCount64(uint64(s)) }

// List returns the buckets of s in increasing order.
func (s BucketSet) List() []int {
	out := make([]int, 0, s.Len())
	for b := range Buckets {
		if s.Has(b) {
			out = append(out, b)
		}
	}
	return out
}

// BucketOf returns the bucket of an event with the given subject and id.
func BucketOf(env event.Envelope) int { return event.PartitionOf(env.Subject, env.ID, Buckets) }

// MessageBucket returns the bucket m's HeaderBucket names, or -1 when the
// header is missing or is not a bucket.
func MessageBucket(m Message) int {
	s := m.Header(HeaderBucket)
	if s == "" || len(s) > 2 {
		return -1
	}
	b, err := strconv.Atoi(s)
	if err != nil || b < 0 || b >= Buckets || strconv.Itoa(b) != s {
		return -1
	}
	return b
}
