package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/edupulse/eventbus/store"
)

const leaseColumns = `relay, partition, coalesce(holder, ''), lease_until, checkpoint_order, checkpoint_id, updated_at`

func scanLease(r pgx.Row) (store.Lease, error) {
	var l store.Lease
	var until pgtype.Timestamptz
	err := r.Scan(&l.Relay, &l.Number, &l.Holder, &until, &l.Checkpoint.Order, &l.Checkpoint.Position, &l.UpdatedAt)
	l.Until = until.Time
	return l, err
}

// Claim takes or renews a relay partition's lease; see store.Leases.
func (s *Store) Claim(ctx context.Context, p store.Partition, holder string, ttl time.Duration) (store.Lease, error) {
	if _, ok := ctx.Deadline(); !ok {
		// A claim answered after its lease ran out is worth nothing, and a
		// server that accepts and never answers must not hang a standby
		// relay for ever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ttl)
		defer cancel()
	}
	l, err := scanLease(s.pool.QueryRow(ctx, `
		WITH claimed AS (
			INSERT INTO eventbus_relay_partitions AS p (relay, partition, holder, lease_until)
			VALUES ($1, $2, $3, clock_timestamp() + $4 * interval '1 microsecond')
			ON CONFLICT (relay, partition) DO UPDATE
			   SET holder = excluded.holder, lease_until = excluded.lease_until, updated_at = clock_timestamp()
			 WHERE p.holder IS NULL OR p.holder = excluded.holder OR p.lease_until < clock_timestamp()
			RETURNING `+leaseColumns+`)
		SELECT * FROM claimed
		UNION ALL
		SELECT `+leaseColumns+` FROM eventbus_relay_partitions
		 WHERE relay = $1 AND partition = $2 AND NOT EXISTS (SELECT 1 FROM claimed)`,
		p.Relay, p.Number, holder, ttl.Microseconds()))
	if err != nil {
		return l, s.wrap(err, fmt.Sprintf("claim relay partition %s/%d", p.Relay, p.Number))
	}
	return l, nil
}

// Advance moves the checkpoint forward and renews the lease.
func (s *Store) Advance(ctx context.Context, p store.Partition, holder string, c store.Cursor, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE eventbus_relay_partitions SET
			checkpoint_order = CASE WHEN ($4::xid8, $5::bigint) > (checkpoint_order, checkpoint_id) THEN $4::xid8 ELSE checkpoint_order END,
			checkpoint_id    = CASE WHEN ($4::xid8, $5::bigint) > (checkpoint_order, checkpoint_id) THEN $5::bigint ELSE checkpoint_id END,
			lease_until = clock_timestamp() + $6 * interval '1 microsecond',
			updated_at  = clock_timestamp()
		WHERE relay = $1 AND partition = $2 AND holder = $3`,
		p.Relay, p.Number, holder, c.Order, c.Position, ttl.Microseconds())
	if err != nil {
		return s.wrap(err, fmt.Sprintf("advance relay partition %s/%d", p.Relay, p.Number))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: advance relay partition %s/%d as %s: %w", p.Relay, p.Number, holder, store.ErrLeaseLost)
	}
	return nil
}

// Relays lists the names of the relays that have partitions.
func (s *Store) Relays(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT relay FROM eventbus_relay_partitions ORDER BY relay`)
	if err != nil {
		return nil, s.wrap(err, "list relays")
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return names, s.wrap(err, "list relays")
}

// Release gives up a lease.
func (s *Store) Release(ctx context.Context, p store.Partition, holder string) error {
	_, err := s.pool.Exec(ctx, `UPDATE eventbus_relay_partitions SET holder = NULL, lease_until = NULL, updated_at = clock_timestamp()
		WHERE relay = $1 AND partition = $2 AND holder = $3`, p.Relay, p.Number, holder)
	return s.wrap(err, fmt.Sprintf("release relay partition %s/%d", p.Relay, p.Number))
}

// Leases lists a relay's partitions.
func (s *Store) Leases(ctx context.Context, relay string) ([]store.Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+leaseColumns+` FROM eventbus_relay_partitions WHERE relay = $1 ORDER BY partition`, relay)
	if err != nil {
		return nil, s.wrap(err, "list relay partitions")
	}
	defer rows.Close()
	var out []store.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, s.wrap(err, "list relay partitions")
		}
		out = append(out, l)
	}
	return out, s.wrap(rows.Err(), "list relay partitions")
}
