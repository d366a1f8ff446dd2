package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// prefixed scans a row whose first columns are extra, then columns.
type prefixed struct {
	r     scanner
	extra []any
}

func (p prefixed) Scan(dest ...any) error { return p.r.Scan(append(p.extra, dest...)...) }

// ReadPartition returns one partition's events in commit order; see
// store.Partitions. Positions are assigned in commit order here, so the
// scan's bound (the last of the next Limit events) is final the moment it
// is read, and the second query reads the partition's events up to it.
func (s *Store) ReadPartition(ctx context.Context, f store.PartitionFilter) (store.PartitionPage, error) {
	count := max(f.Count, 1)
	if err := store.CheckPartition(f.Number, count); err != nil {
		return store.PartitionPage{}, fmt.Errorf("sqlite: read partition: %w: %w", store.ErrBadFilter, err)
	}
	from, err := after(f.After)
	if err != nil {
		return store.PartitionPage{}, err
	}
	limit := store.Filter{Limit: f.Limit}.EffectiveLimit()
	if count == 1 {
		events, err := s.collect(ctx, "read partition", "SELECT "+columns+" FROM event_store WHERE id > ? ORDER BY id LIMIT ?", from, limit)
		if err != nil {
			return store.PartitionPage{}, err
		}
		return store.PartitionPage{Events: events, Next: store.PageAfter(f.After, events).Next, Full: len(events) == limit}, nil
	}
	op := fmt.Sprintf("read partition %d of %d", f.Number, count)
	var bound sql.NullInt64
	var scanned int64
	if err := s.read.QueryRowContext(ctx, `SELECT max(id), count(*) FROM (SELECT id FROM event_store WHERE id > ? ORDER BY id LIMIT ?)`,
		from, limit).Scan(&bound, &scanned); err != nil {
		return store.PartitionPage{}, s.wrap(err, op)
	}
	page := store.PartitionPage{Next: f.After, Full: scanned == int64(limit)}
	if !bound.Valid {
		return page, nil
	}
	page.Next = store.Cursor{Order: uint64(bound.Int64), Position: bound.Int64}
	rows, err := s.read.QueryContext(ctx, `SELECT stream_hash, `+columns+` FROM event_store
		WHERE id > ? AND id <= ? AND (stream_hash IS NULL OR stream_hash % ? = ?) ORDER BY id`, from, bound.Int64, count, f.Number)
	if err != nil {
		return store.PartitionPage{}, s.wrap(err, op)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var hash sql.NullInt64
		env, err := scanEvent(prefixed{r: rows, extra: []any{&hash}})
		if err != nil {
			return store.PartitionPage{}, s.wrap(err, op)
		}
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
		return 0, time.Time{}, fmt.Errorf("sqlite: partition backlog: %w: %w", store.ErrBadFilter, err)
	}
	from, err := after(c)
	if err != nil {
		return 0, time.Time{}, err
	}
	var n int64
	var oldest sql.NullInt64
	if err := s.read.QueryRowContext(ctx, `SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM event_store
		WHERE id > ? AND (stream_hash IS NULL OR stream_hash % ? = ?) ORDER BY id LIMIT ?)`, from, count, number, limit).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, s.wrap(err, fmt.Sprintf("count the backlog of partition %d", number))
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, time.UnixMicro(oldest.Int64).UTC(), nil
}

// Heartbeat records a live relay process; see store.Partitions. It runs in
// one write transaction: SQLite's single writer makes heartbeats, and a
// change of the partition count, happen one at a time.
func (s *Store) Heartbeat(ctx context.Context, relay, holder string, partitions int, ttl time.Duration) ([]store.Member, error) {
	if err := store.CheckPartition(0, partitions); err != nil {
		return nil, fmt.Errorf("sqlite: relay %s heartbeat: %w", relay, err)
	}
	op := "relay " + relay + " heartbeat"
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UnixMicro()
	if _, err := tx.ExecContext(ctx, `INSERT INTO eventbus_relays (relay, partitions, changed_at) VALUES (?, ?, ?) ON CONFLICT (relay) DO NOTHING`,
		relay, partitions, now); err != nil {
		return nil, s.wrap(err, op)
	}
	var stored int
	if err := tx.QueryRowContext(ctx, `SELECT partitions FROM eventbus_relays WHERE relay = ?`, relay).Scan(&stored); err != nil {
		return nil, s.wrap(err, op)
	}
	if stored != partitions {
		if err := changePartitions(ctx, tx, relay, holder, stored, partitions, now); err != nil {
			if errors.Is(err, store.ErrPartitionCount) {
				return nil, fmt.Errorf("sqlite: %w", err)
			}
			return nil, s.wrap(err, op)
		}
	}
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2)
		INSERT INTO eventbus_relay_partitions (relay, "partition", updated_at)
		SELECT ?1, n, ?3 FROM g WHERE true ON CONFLICT DO NOTHING`, relay, partitions, now); err != nil {
		return nil, s.wrap(err, op)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO eventbus_relay_members (relay, holder, partitions, seen_until, joined_at)
		VALUES (?1, ?2, ?3, ?4, ?5)
		ON CONFLICT (relay, holder) DO UPDATE SET partitions = excluded.partitions, seen_until = excluded.seen_until`,
		relay, holder, partitions, now+ttl.Microseconds(), now); err != nil {
		return nil, s.wrap(err, op)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM eventbus_relay_members WHERE relay = ? AND seen_until < ?`, relay, now); err != nil {
		return nil, s.wrap(err, op)
	}
	members, err := liveMembers(ctx, tx, relay, now)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	if err := tx.Commit(); err != nil {
		return nil, s.wrap(err, op)
	}
	return members, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func liveMembers(ctx context.Context, q querier, relay string, now int64) ([]store.Member, error) {
	rows, err := q.QueryContext(ctx, `SELECT holder, seen_until FROM eventbus_relay_members WHERE relay = ? AND seen_until > ? ORDER BY holder`, relay, now)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []store.Member
	for rows.Next() {
		var m store.Member
		var until int64
		if err := rows.Scan(&m.Holder, &until); err != nil {
			return nil, err
		}
		m.Until = time.UnixMicro(until).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// changePartitions changes relay's partition count from stored to
// partitions, in tx, if no other process of it is alive; see
// store.Partitions.Heartbeat.
func changePartitions(ctx context.Context, tx *sql.Tx, relay, holder string, stored, partitions int, now int64) error {
	alive, err := liveMembers(ctx, tx, relay, now)
	if err != nil {
		return err
	}
	var others []store.Member
	for _, m := range alive {
		if m.Holder != holder {
			others = append(others, m)
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT holder, lease_until FROM eventbus_relay_partitions
		WHERE relay = ? AND holder IS NOT NULL AND holder <> ? AND lease_until > ? ORDER BY holder`, relay, holder, now)
	if err != nil {
		return err
	}
	for rows.Next() {
		var m store.Member
		var until int64
		if err := rows.Scan(&m.Holder, &until); err != nil {
			_ = rows.Close()
			return err
		}
		m.Until = time.UnixMicro(until).UTC()
		others = append(others, m)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if len(others) > 0 {
		return store.PartitionCountError(relay, stored, partitions, others)
	}
	// The new partitions start at the lowest checkpoint of the old ones.
	var from, rowsN int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(min(checkpoint_id), 0) FROM eventbus_relay_partitions WHERE relay = ?`,
		relay).Scan(&rowsN, &from); err != nil {
		return err
	}
	if rowsN < int64(stored) {
		from = 0
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM eventbus_relay_partitions WHERE relay = ?`, relay); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2)
		INSERT INTO eventbus_relay_partitions (relay, "partition", checkpoint_order, checkpoint_id, updated_at)
		SELECT ?1, n, ?3, ?3, ?4 FROM g`, relay, partitions, from, now); err != nil {
		return err
	}
	type move struct {
		from int
		id   string
		to   int
	}
	var moves []move
	prow, err := tx.QueryContext(ctx, `SELECT "partition", event_id, stream FROM eventbus_parked_events WHERE relay = ?`, relay)
	if err != nil {
		return err
	}
	for prow.Next() {
		var m move
		var stream string
		if err := prow.Scan(&m.from, &m.id, &stream); err != nil {
			_ = prow.Close()
			return err
		}
		id, err := uuid.Parse(m.id)
		if err != nil {
			_ = prow.Close()
			return fmt.Errorf("parked event id %q: %w", m.id, err)
		}
		m.to = event.PartitionOf(stream, id, partitions)
		moves = append(moves, m)
	}
	if err := prow.Close(); err != nil {
		return err
	}
	for _, m := range moves {
		if m.from == m.to {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE eventbus_parked_events SET "partition" = ? WHERE relay = ? AND "partition" = ? AND event_id = ?`,
			m.to, relay, m.from, m.id); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE eventbus_relays SET partitions = ?, changed_at = ? WHERE relay = ?`, partitions, now, relay)
	return err
}

// Leave removes a relay process from the live ones.
func (s *Store) Leave(ctx context.Context, relay, holder string) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM eventbus_relay_members WHERE relay = ? AND holder = ?`, relay, holder)
	return s.wrap(err, "relay "+relay+" leave")
}

// RelayState returns a relay's partition count and live processes.
func (s *Store) RelayState(ctx context.Context, relay string) (store.RelayState, error) {
	var st store.RelayState
	err := s.read.QueryRowContext(ctx, `SELECT partitions FROM eventbus_relays WHERE relay = ?`, relay).Scan(&st.Partitions)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, s.wrap(err, "relay "+relay+" state")
	}
	if st.Members, err = liveMembers(ctx, s.read, relay, time.Now().UnixMicro()); err != nil {
		return st, s.wrap(err, "relay "+relay+" state")
	}
	return st, nil
}
