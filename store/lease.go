package store

import (
	"context"
	"time"
)

// Partition names one relay partition. Today a relay has one partition,
// number 0; partitioned relays (stream hash to partition, each partition held
// by one relay) reuse the same records.
type Partition struct {
	Relay  string
	Number int
}

// Lease is the state of one relay partition: who publishes it, until when,
// and how far it has published.
type Lease struct {
	Partition
	// Holder identifies the relay that holds the lease, or "" for none.
	Holder string
	// Until is when the lease expires unless renewed.
	Until time.Time
	// Checkpoint is the cursor of the last event confirmed by the broker, in
	// commit order. It never moves backwards.
	Checkpoint Cursor
	// UpdatedAt is when the checkpoint or the lease last changed.
	UpdatedAt time.Time
}

// Leases elects one active relay per partition and keeps its checkpoint.
// Times are the store's clock, so that relays on several machines agree.
type Leases interface {
	// Claim makes holder the holder of p's lease for ttl if the lease is
	// free, expired or already holder's. It returns the lease as it stands
	// afterwards: the claim won if the returned Holder is holder.
	Claim(ctx context.Context, p Partition, holder string, ttl time.Duration) (Lease, error)
	// Advance moves p's checkpoint to c (never backwards) and extends
	// holder's lease by ttl. It fails with ErrLeaseLost when holder no longer
	// holds the lease: a relay that gets it must stop publishing.
	Advance(ctx context.Context, p Partition, holder string, c Cursor, ttl time.Duration) error
	// Release gives up holder's lease, so that a standby takes over at once.
	Release(ctx context.Context, p Partition, holder string) error
	// Leases lists the partitions of relay.
	Leases(ctx context.Context, relay string) ([]Lease, error)
	// Relays lists the names of the relays that have partitions, sorted.
	Relays(ctx context.Context) ([]string, error)
}
