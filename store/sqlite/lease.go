package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/edupulse/eventbus/store"
)

// Leases use the clock of the process: every relay of an SQLite store runs
// on the machine that holds its file.

const leaseColumns = `relay, "partition", coalesce(holder, ''), lease_until, checkpoint_order, checkpoint_id, updated_at`

func scanLease(r scanner) (store.Lease, error) {
	var l store.Lease
	var until sql.NullInt64
	var order, updated int64
	if err := r.Scan(&l.Relay, &l.Number, &l.Holder, &until, &order, &l.Checkpoint.Position, &updated); err != nil {
		return l, err
	}
	if until.Valid {
		l.Until = time.UnixMicro(until.Int64).UTC()
	}
	l.Checkpoint.Order = uint64(order)
	l.UpdatedAt = time.UnixMicro(updated).UTC()
	return l, nil
}

func partitionName(p store.Partition) string { return fmt.Sprintf("%s/%d", p.Relay, p.Number) }

// Claim takes or renews a relay partition's lease; see store.Leases.
func (s *Store) Claim(ctx context.Context, p store.Partition, holder string, ttl time.Duration) (store.Lease, error) {
	op := "claim relay partition " + partitionName(p)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return store.Lease{}, s.wrap(err, op)
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now()
	_, err = tx.ExecContext(ctx, `
		INSERT INTO eventbus_relay_partitions (relay, "partition", holder, lease_until, updated_at)
		VALUES (?1, ?2, ?3, ?4, ?5)
		ON CONFLICT (relay, "partition") DO UPDATE
		   SET holder = excluded.holder, lease_until = excluded.lease_until, updated_at = excluded.updated_at
		 WHERE holder IS NULL OR holder = excluded.holder OR lease_until < ?5`,
		p.Relay, p.Number, holder, now.Add(ttl).UnixMicro(), now.UnixMicro())
	if err != nil {
		return store.Lease{}, s.wrap(err, op)
	}
	l, err := scanLease(tx.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM eventbus_relay_partitions
		WHERE relay = ? AND "partition" = ?`, p.Relay, p.Number))
	if err != nil {
		return store.Lease{}, s.wrap(err, op)
	}
	if err := tx.Commit(); err != nil {
		return store.Lease{}, s.wrap(err, op)
	}
	return l, nil
}

// Advance moves the checkpoint forward (never back) and renews the lease.
func (s *Store) Advance(ctx context.Context, p store.Partition, holder string, c store.Cursor, ttl time.Duration) error {
	op := "advance relay partition " + partitionName(p)
	if c.Order > math.MaxInt64 || c.Position < 0 {
		return fmt.Errorf("sqlite: %s: %w: cursor %v is out of range", op, store.ErrBadCursor, c)
	}
	now := time.Now()
	res, err := s.write.ExecContext(ctx, `
		UPDATE eventbus_relay_partitions SET
			checkpoint_order = CASE WHEN (?4, ?5) > (checkpoint_order, checkpoint_id) THEN ?4 ELSE checkpoint_order END,
			checkpoint_id    = CASE WHEN (?4, ?5) > (checkpoint_order, checkpoint_id) THEN ?5 ELSE checkpoint_id END,
			lease_until = ?6,
			updated_at  = ?7
		WHERE relay = ?1 AND "partition" = ?2 AND holder = ?3`,
		p.Relay, p.Number, holder, int64(c.Order), c.Position, now.Add(ttl).UnixMicro(), now.UnixMicro())
	if err != nil {
		return s.wrap(err, op)
	}
	if n, err := res.RowsAffected(); err != nil {
		return s.wrap(err, op)
	} else if n == 0 {
		return fmt.Errorf("sqlite: %s as %s: %w", op, holder, store.ErrLeaseLost)
	}
	return nil
}

// Release gives up a lease.
func (s *Store) Release(ctx context.Context, p store.Partition, holder string) error {
	_, err := s.write.ExecContext(ctx, `UPDATE eventbus_relay_partitions SET holder = NULL, lease_until = NULL, updated_at = ?
		WHERE relay = ? AND "partition" = ? AND holder = ?`, time.Now().UnixMicro(), p.Relay, p.Number, holder)
	return s.wrap(err, "release relay partition "+partitionName(p))
}

// Relays lists the names of the relays that have partitions.
func (s *Store) Relays(ctx context.Context) ([]string, error) {
	const op = "list relays"
	rows, err := s.read.QueryContext(ctx, `SELECT DISTINCT relay FROM eventbus_relay_partitions ORDER BY relay`)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer func() { _ = rows.Close() }()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, s.wrap(err, op)
		}
		names = append(names, name)
	}
	return names, s.wrap(rows.Err(), op)
}

// Leases lists a relay's partitions.
func (s *Store) Leases(ctx context.Context, relay string) ([]store.Lease, error) {
	const op = "list relay partitions"
	rows, err := s.read.QueryContext(ctx, `SELECT `+leaseColumns+` FROM eventbus_relay_partitions WHERE relay = ? ORDER BY "partition"`, relay)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer func() { _ = rows.Close() }()
	var out []store.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, s.wrap(err, op)
		}
		out = append(out, l)
	}
	return out, s.wrap(rows.Err(), op)
}
