package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/edupulse/eventbus/store"
)

// DefaultName is the relay name used when none is configured.
const DefaultName = "default"

// Status is the state of a relay, read from the store: the figures the
// `eventbus status` command and the /v1/status endpoint report. It needs no
// running relay in this process.
type Status struct {
	Relay string `json:"relay"`
	// PartitionCount is the count the relay runs with
	// (EVENTBUS_RELAY_PARTITIONS); Partitions lists each.
	PartitionCount int              `json:"partition_count"`
	Partitions     []PartitionState `json:"partitions"`
	// Processes are the relay's live processes and how many partitions
	// each holds: a process holding none stands by.
	Processes []Process `json:"processes"`
	// Backlog counts events committed but not yet confirmed by the broker,
	// summed over partitions (capped at BacklogCap each).
	Backlog int64 `json:"backlog"`
	// Lag is the age of the oldest committed event not yet confirmed: how
	// far behind the relay is. It counts the held-back events too, which
	// the relay cannot even read yet. Zero when the backlog is empty.
	Lag Duration `json:"lag"`
	// Events is the number of stored events (an estimate on large stores).
	Events int64 `json:"events"`
	// Head is the cursor of the newest event readers can see, and
	// HeadPosition its global position: where a newest-first view (the
	// console's) starts. "" and 0 on an empty store.
	Head         string `json:"head"`
	HeadPosition int64  `json:"head_position"`
	// HeldBack counts committed events that readers cannot see yet because
	// an older transaction is still open; OldestTxAge is that transaction's
	// age.
	HeldBack    int64    `json:"held_back"`
	OldestTxAge Duration `json:"oldest_tx_age"`
	// Parked counts the events the relay parked because the broker refuses
	// them, with the events waiting behind them (G9): see
	// `eventbus parked list`.
	Parked int `json:"parked"`
	// Healthy is false when no relay holds a partition's lease, an event is
	// parked, or the lag exceeds the threshold given to ReadStatus.
	// Problems says why.
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// PartitionState is one relay partition in a Status.
type PartitionState struct {
	Partition  int       `json:"partition"`
	Leader     string    `json:"leader"` // "" when no relay holds the lease
	LeaseUntil time.Time `json:"lease_until,omitempty"`
	Checkpoint string    `json:"checkpoint"` // cursor token
	Position   int64     `json:"checkpoint_position"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Backlog counts the partition's events not yet confirmed, and Lag is
	// the age of the oldest of them (zero when none).
	Backlog int64    `json:"backlog"`
	Lag     Duration `json:"lag"`
}

// Process is one live relay process in a Status.
type Process struct {
	Holder     string    `json:"holder"`
	Partitions int       `json:"partitions"` // how many it holds
	SeenUntil  time.Time `json:"seen_until"` // when it counts as gone unless heard from
}

// Duration is a time.Duration that encodes in JSON as seconds.
type Duration time.Duration

// MarshalJSON encodes d as a number of seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

// BacklogCap bounds the backlog count, so that a status call stays cheap on a
// relay that is far behind.
const BacklogCap = 1_000_000

// ReadStatus reads the status of relay from s. maxLag, when positive, is the
// lag above which the relay counts as unhealthy.
func ReadStatus(ctx context.Context, s store.Store, relay string, maxLag time.Duration) (Status, error) {
	st := Status{Relay: relay, Healthy: true}
	stats, err := s.Stats(ctx)
	if err != nil {
		return st, fmt.Errorf("relay status: %w", err)
	}
	st.Events, st.HeldBack, st.OldestTxAge = stats.Events, stats.HeldBack, Duration(stats.OldestTxAge)
	st.Head, st.HeadPosition = stats.Head.String(), stats.Head.Position
	now := time.Now()
	if !stats.OldestHeldBack.IsZero() {
		// Held-back events are after every checkpoint: no reader has seen
		// them.
		st.Lag = Duration(max(now.Sub(stats.OldestHeldBack), 0))
	}
	state, err := s.RelayState(ctx, relay)
	if err != nil {
		return st, fmt.Errorf("relay status: %w", err)
	}
	leases, err := s.Leases(ctx, relay)
	if err != nil {
		return st, fmt.Errorf("relay status: %w", err)
	}
	st.PartitionCount = max(state.Partitions, 1)
	byNumber := map[int]store.Lease{}
	for _, l := range leases {
		byNumber[l.Number] = l
	}
	held := map[string]int{}
	st.Processes = []Process{}
	for p := range st.PartitionCount {
		l, ok := byNumber[p]
		if !ok {
			l = store.Lease{Partition: store.Partition{Relay: relay, Number: p}}
		}
		ps := PartitionState{Partition: p, LeaseUntil: l.Until, Checkpoint: l.Checkpoint.String(),
			Position: l.Checkpoint.Position, UpdatedAt: l.UpdatedAt}
		if l.Holder != "" && l.Until.After(now) {
			ps.Leader = l.Holder
			held[l.Holder]++
		} else {
			st.Healthy = false
			st.Problems = append(st.Problems, fmt.Sprintf("partition %d: no relay holds the lease", p))
		}
		n, oldest, err := s.PartitionBacklog(ctx, l.Checkpoint, p, st.PartitionCount, BacklogCap)
		if err != nil {
			return st, fmt.Errorf("relay status: %w", err)
		}
		ps.Backlog = n
		if !oldest.IsZero() {
			ps.Lag = Duration(max(now.Sub(oldest), 0))
		}
		st.Backlog += n
		st.Lag = max(st.Lag, ps.Lag)
		st.Partitions = append(st.Partitions, ps)
	}
	for _, m := range state.Members {
		st.Processes = append(st.Processes, Process{Holder: m.Holder, Partitions: held[m.Holder], SeenUntil: m.Until})
	}
	parked, err := s.Parked(ctx, relay)
	if err != nil {
		return st, fmt.Errorf("relay status: %w", err)
	}
	if st.Parked = len(parked); st.Parked > 0 {
		st.Healthy = false
		st.Problems = append(st.Problems, fmt.Sprintf("%d parked events: the broker refuses them; see 'eventbus parked list', fix the cause, then 'eventbus parked retry --all'", st.Parked))
	}
	if maxLag > 0 && time.Duration(st.Lag) > maxLag {
		st.Healthy = false
		problem := fmt.Sprintf("lag %s exceeds %s", time.Duration(st.Lag).Round(time.Millisecond), maxLag)
		if st.HeldBack > 0 {
			problem += fmt.Sprintf(" (%d events held back by a transaction open for %s, in any database of the server)",
				st.HeldBack, time.Duration(st.OldestTxAge).Round(time.Millisecond))
		}
		st.Problems = append(st.Problems, problem)
	}
	return st, nil
}
