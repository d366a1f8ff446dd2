package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// scanBoundSQL finds where a partition's read ends: the last of the next
// $3 visible events of every partition after the cursor ($1, $2), read from
// the commit-order index alone, and how many there are. Every row up to
// that bound has a commit-order key below the snapshot's xmin, so it is
// final: no row can appear there later (G4), and readPartitionSQL, a
// statement of its own, reads exactly those rows.
const scanBoundSQL = `SELECT commit_order, id, n FROM (
	SELECT commit_order, id, row_number() OVER (ORDER BY commit_order, id) AS n FROM (
		SELECT commit_order, id FROM event_store
		 WHERE (commit_order, id) > ($1, $2) AND ` + visible + `
		 ORDER BY commit_order, id LIMIT $3) s) t
 ORDER BY n DESC LIMIT 1`

// readPartitionSQL reads a partition's rows up to the bound ($3, $4): a
// range of the commit-order index, filtered by the stream hash.
const readPartitionSQL = `SELECT ` + columns + `, stream_hash FROM event_store
 WHERE (commit_order, id) > ($1, $2) AND (commit_order, id) <= ($3, $4)
   AND (stream_hash IS NULL OR stream_hash % $5::bigint = $6::bigint)
 ORDER BY commit_order, id`

// ReadPartition returns one partition's events in commit order; see
// store.Partitions.
func (s *Store) ReadPartition(ctx context.Context, f store.PartitionFilter) (store.PartitionPage, error) {
	count := max(f.Count, 1)
	if err := store.CheckPartition(f.Number, count); err != nil {
		return store.PartitionPage{}, fmt.Errorf("postgres: read partition: %w: %w", store.ErrBadFilter, err)
	}
	limit := store.Filter{Limit: f.Limit}.EffectiveLimit()
	if count == 1 {
		events, err := s.collect(ctx, "read partition", limit, "SELECT "+columns+" FROM event_store WHERE (commit_order, id) > ($1, $2) AND "+
			visible+" ORDER BY commit_order, id LIMIT $3", f.After.Order, f.After.Position, limit)
		if err != nil {
			return store.PartitionPage{}, err
		}
		return store.PartitionPage{Events: events, Next: store.PageAfter(f.After, events).Next, Full: len(events) == limit}, nil
	}
	op := fmt.Sprintf("read partition %d of %d", f.Number, count)
	var bound store.Cursor
	var scanned int64
	err := s.pool.QueryRow(ctx, scanBoundSQL, f.After.Order, f.After.Position, limit).Scan(&bound.Order, &bound.Position, &scanned)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.PartitionPage{Next: f.After}, nil
	}
	if err != nil {
		return store.PartitionPage{}, s.wrap(err, op)
	}
	page := store.PartitionPage{Next: bound, Full: scanned == int64(limit)}
	rows, err := s.pool.Query(ctx, readPartitionSQL, f.After.Order, f.After.Position, bound.Order, bound.Position, count, f.Number)
	if err != nil {
		return store.PartitionPage{}, s.wrap(err, op)
	}
	defer rows.Close()
	for rows.Next() {
		var hash pgtype.Int8
		var r row
		if err := rows.Scan(append(r.dests(), &hash)...); err != nil {
			return store.PartitionPage{}, s.wrap(err, op)
		}
		env := r.envelope()
		if !hash.Valid && !store.InPartition(env, f.Number, count) {
			continue // written before stream hashes were kept: placed here
		}
		page.Events = append(page.Events, env)
	}
	if err := rows.Err(); err != nil {
		return store.PartitionPage{}, s.wrap(err, op)
	}
	return page, nil
}

// PartitionBacklog counts a partition's events after c; see
// store.Partitions.
func (s *Store) PartitionBacklog(ctx context.Context, c store.Cursor, number, count, limit int) (int64, time.Time, error) {
	count = max(count, 1)
	if err := store.CheckPartition(number, count); err != nil {
		return 0, time.Time{}, fmt.Errorf("postgres: partition backlog: %w: %w", store.ErrBadFilter, err)
	}
	var n int64
	var oldest pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM event_store
		WHERE (commit_order, id) > ($1, $2) AND (stream_hash IS NULL OR stream_hash % $3::bigint = $4::bigint)
		LIMIT $5) t`, c.Order, c.Position, count, number, limit).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, s.wrap(err, fmt.Sprintf("count the backlog of partition %d", number))
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, oldest.Time.UTC(), nil
}

// Heartbeat records a live relay process; see store.Partitions. It runs in
// one transaction that locks the relay's row in eventbus_relays, so that
// heartbeats, and a change of the partition count above all, happen one at
// a time.
func (s *Store) Heartbeat(ctx context.Context, relay, holder string, partitions int, ttl time.Duration) ([]store.Member, error) {
	if err := store.CheckPartition(0, partitions); err != nil {
		return nil, fmt.Errorf("postgres: relay %s heartbeat: %w", relay, err)
	}
	op := "relay " + relay + " heartbeat"
	var members []store.Member
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO eventbus_relays (relay, partitions) VALUES ($1, $2) ON CONFLICT (relay) DO NOTHING`,
			relay, partitions); err != nil {
			return err
		}
		var stored int
		if err := tx.QueryRow(ctx, `SELECT partitions FROM eventbus_relays WHERE relay = $1 FOR UPDATE`, relay).Scan(&stored); err != nil {
			return err
		}
		if stored != partitions {
			if err := s.changePartitions(ctx, tx, relay, holder, stored, partitions); err != nil {
				return err
			}
		}
		// The partitions exist from the first heartbeat on, each at the
		// beginning: a relay that never ran publishes every event.
		if _, err := tx.Exec(ctx, `INSERT INTO eventbus_relay_partitions (relay, partition)
			SELECT $1, g FROM generate_series(0, $2::int - 1) g ON CONFLICT DO NOTHING`, relay, partitions); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO eventbus_relay_members (relay, holder, partitions, seen_until)
			VALUES ($1, $2, $3, clock_timestamp() + $4 * interval '1 microsecond')
			ON CONFLICT (relay, holder) DO UPDATE SET partitions = excluded.partitions, seen_until = excluded.seen_until`,
			relay, holder, partitions, ttl.Microseconds()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM eventbus_relay_members WHERE relay = $1 AND seen_until < clock_timestamp()`, relay); err != nil {
			return err
		}
		var err error
		members, err = liveMembers(ctx, tx, relay)
		return err
	})
	if errors.Is(err, store.ErrPartitionCount) {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err != nil {
		return nil, s.wrap(err, op)
	}
	return members, nil
}

// changePartitions changes relay's partition count from stored to
// partitions, in tx, if no other process of it is alive.
func (s *Store) changePartitions(ctx context.Context, tx pgx.Tx, relay, holder string, stored, partitions int) error {
	alive, err := liveMembers(ctx, tx, relay)
	if err != nil {
		return err
	}
	var others []store.Member
	for _, m := range alive {
		if m.Holder != holder {
			others = append(others, m)
		}
	}
	var leased []store.Member
	rows, err := tx.Query(ctx, `SELECT holder, lease_until FROM eventbus_relay_partitions
		WHERE relay = $1 AND holder IS NOT NULL AND holder <> $2 AND lease_until > clock_timestamp() ORDER BY holder`, relay, holder)
	if err != nil {
		return err
	}
	if leased, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Member, error) {
		var m store.Member
		err := r.Scan(&m.Holder, &m.Until)
		return m, err
	}); err != nil {
		return err
	}
	if len(others) > 0 || len(leased) > 0 {
		return store.PartitionCountError(relay, stored, partitions, append(others, leased...))
	}
	// Every event before the lowest checkpoint is published, in every
	// partition: the new partitions start there. A partition without a
	// row never published anything.
	var from store.Cursor
	var rowsN int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM eventbus_relay_partitions WHERE relay = $1`, relay).Scan(&rowsN); err != nil {
		return err
	}
	if rowsN >= stored {
		if err := tx.QueryRow(ctx, `SELECT checkpoint_order, checkpoint_id FROM eventbus_relay_partitions WHERE relay = $1
			ORDER BY checkpoint_order, checkpoint_id LIMIT 1`, relay).Scan(&from.Order, &from.Position); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM eventbus_relay_partitions WHERE relay = $1`, relay); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO eventbus_relay_partitions (relay, partition, checkpoint_order, checkpoint_id)
		SELECT $1, g, $3, $4 FROM generate_series(0, $2::int - 1) g`, relay, partitions, from.Order, from.Position); err != nil {
		return err
	}
	// Parked events move to the partition of their stream under the new
	// count, so that its new holder keeps them parked.
	prow, err := tx.Query(ctx, `SELECT partition, event_id, stream FROM eventbus_parked_events WHERE relay = $1`, relay)
	if err != nil {
		return err
	}
	type parked struct {
		from int
		id   pgtype.UUID
		to   int
	}
	moves, err := pgx.CollectRows(prow, func(r pgx.CollectableRow) (parked, error) {
		var p parked
		var stream string
		err := r.Scan(&p.from, &p.id, &stream)
		p.to = event.PartitionOf(stream, p.id.Bytes, partitions)
		return p, err
	})
	if err != nil {
		return err
	}
	for _, p := range moves {
		if p.from == p.to {
			continue
		}
		if _, err := tx.Exec(ctx, `UPDATE eventbus_parked_events SET partition = $3 WHERE relay = $1 AND partition = $2 AND event_id = $4`,
			relay, p.from, p.to, p.id); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, `UPDATE eventbus_relays SET partitions = $2, changed_at = clock_timestamp() WHERE relay = $1`, relay, partitions)
	return err
}

func liveMembers(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, relay string) ([]store.Member, error) {
	rows, err := q.Query(ctx, `SELECT holder, seen_until FROM eventbus_relay_members
		WHERE relay = $1 AND seen_until > clock_timestamp() ORDER BY holder`, relay)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Member, error) {
		var m store.Member
		err := r.Scan(&m.Holder, &m.Until)
		m.Until = m.Until.UTC()
		return m, err
	})
}

// Leave removes a relay process from the live ones.
func (s *Store) Leave(ctx context.Context, relay, holder string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM eventbus_relay_members WHERE relay = $1 AND holder = $2`, relay, holder)
	return s.wrap(err, "relay "+relay+" leave")
}

// RelayState returns a relay's partition count and live processes.
func (s *Store) RelayState(ctx context.Context, relay string) (store.RelayState, error) {
	var st store.RelayState
	err := s.pool.QueryRow(ctx, `SELECT partitions FROM eventbus_relays WHERE relay = $1`, relay).Scan(&st.Partitions)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, s.wrap(err, "relay "+relay+" state")
	}
	if st.Members, err = liveMembers(ctx, s.pool, relay); err != nil {
		return st, s.wrap(err, "relay "+relay+" state")
	}
	return st, nil
}
