package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/edupulse/eventbus/event"
)

// Relay partitions (DESIGN "Partitions"). A relay's work is split N ways by
// event.PartitionOf(subject, id, N). Each store keeps every event's
// event.StreamHash, so that a partition's reader selects its own events
// without reading the others'; rows written before the stores kept it are
// placed by the reader with event.PartitionOf.

// MaxPartitions bounds the partition count of a relay. Every partition is
// read on its own, polling when idle, so the count is the number of
// processes the relay can spread over, not a tuning knob to set high.
const MaxPartitions = 64

// ErrPartitionCount reports that a relay process is configured with a
// partition count other than the one the relay runs with, while processes
// of that count are alive: two partitionings must never publish at once.
var ErrPartitionCount = errors.New("relay partition count differs from the running relay's")

// PartitionFilter selects the events of one relay partition, in commit
// order.
type PartitionFilter struct {
	// After is the partition's cursor.
	After Cursor
	// Limit bounds the events scanned, of every partition: a read returns
	// about Limit/Count events of its own. 0 means DefaultLimit.
	Limit int
	// Number is the partition, in [0, Count); Count the relay's partition
	// count (0 counts as 1).
	Number, Count int
}

// PartitionPage is what one read of a partition found.
type PartitionPage struct {
	// Events are the partition's events in commit order.
	Events []event.Envelope
	// Next is the cursor to read on from: the last event scanned, of any
	// partition, so that a partition whose streams are quiet does not scan
	// the others' events again. It never skips an event of the partition.
	Next Cursor
	// Full reports that the scan stopped at the limit: more may follow
	// at once.
	Full bool
}

// CheckPartition returns an error when number and count cannot name a
// partition.
func CheckPartition(number, count int) error {
	if count < 1 || count > MaxPartitions || number < 0 || number >= count {
		return fmt.Errorf("partition %d of %d: the count must be 1 to %d and the number below it", number, count, MaxPartitions)
	}
	return nil
}

// InPartition reports whether env belongs to partition number of count.
func InPartition(env event.Envelope, number, count int) bool {
	return event.PartitionOf(env.Subject, env.ID, count) == number
}

// Member is one live process of a relay.
type Member struct {
	Holder string
	// Until is when it counts as gone unless it is heard from again.
	Until time.Time
}

// RelayState is a relay's partition count and live processes.
type RelayState struct {
	// Partitions is the count the relay runs with; 0 when it never ran.
	Partitions int
	// Members are the live processes, by holder.
	Members []Member
}

// Partitions is the store's side of partitioned relays.
type Partitions interface {
	// ReadPartition returns a partition's events after f.After, in commit
	// order, with the G4 guarantee of Read.
	ReadPartition(ctx context.Context, f PartitionFilter) (PartitionPage, error)
	// PartitionBacklog counts the partition's events committed after c,
	// held-back ones included, up to limit, and returns when the oldest
	// of them was recorded (zero when none). Events written before the
	// store kept stream hashes count in every partition.
	PartitionBacklog(ctx context.Context, c Cursor, number, count, limit int) (int64, time.Time, error)
	// Heartbeat records that holder, a process of relay configured with
	// partitions partitions, is alive for ttl, and returns the relay's
	// live processes (holder among them), by holder.
	//
	// The first heartbeat of a relay records its partition count and
	// makes its partitions. A heartbeat with another count than the
	// recorded one fails with ErrPartitionCount while another process is
	// alive; with none alive it changes the count: every new partition
	// starts from the lowest checkpoint of the old ones (so nothing is
	// skipped; events between the old checkpoints are published again),
	// old leases end, and parked events move to their new partitions.
	Heartbeat(ctx context.Context, relay, holder string, partitions int, ttl time.Duration) ([]Member, error)
	// Leave removes holder from relay's live processes, so that the
	// others take its share at once.
	Leave(ctx context.Context, relay, holder string) error
	// RelayState returns relay's partition count and live processes.
	RelayState(ctx context.Context, relay string) (RelayState, error)
}

// PartitionCountError is the error of a heartbeat with another partition
// count than the running relay's.
func PartitionCountError(relay string, stored, configured int, alive []Member) error {
	var holders []string
	for _, m := range alive {
		if !slices.Contains(holders, m.Holder) {
			holders = append(holders, m.Holder)
		}
	}
	slices.Sort(holders)
	return fmt.Errorf("%w: relay %s runs with %d partitions (processes %v), this process is configured with %d: "+
		"give every process the same EVENTBUS_RELAY_PARTITIONS, or stop every relay process of %s to change it "+
		"(docs/operations.md, \"Changing the partition count\")",
		ErrPartitionCount, relay, stored, holders, configured, relay)
}
