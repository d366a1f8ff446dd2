package event

import (
	"hash/fnv"

	"github.com/google/uuid"
)

// StreamHash is the stable hash that spreads events over relay partitions
// and consumer queues while keeping each stream in one place: the 32-bit
// FNV-1a hash of the stream's subject, or of the event ID's bytes for an
// event without a stream. It never changes between releases, because
// stored partition numbers and queue bindings depend on it.
func StreamHash(subject string, id uuid.UUID) uint32 {
	h := fnv.New32a()
	if subject != "" {
		_, _ = h.Write([]byte(subject))
	} else {
		_, _ = h.Write(id[:])
	}
	return h.Sum32()
}

// PartitionOf returns the partition, in [0, n), of an event with the given
// subject and ID when the work is split n ways. n below 1 counts as 1.
func PartitionOf(subject string, id uuid.UUID, n int) int {
	if n <= 1 {
		return 0
	}
	return int(StreamHash(subject, id) % uint32(n))
}
