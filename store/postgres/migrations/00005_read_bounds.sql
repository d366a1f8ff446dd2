-- Indexes that bound reads by time and by position in commit order (issue 20).
--
-- A read in commit order walks event_store_commit_order_idx. With a time
-- window (since/until) or a position range it used to walk from the start of
-- the table, or on to its end, throwing away the rows outside the window: its
-- cost followed the table, not the answer. These two indexes let a read first
-- find the smallest and the largest commit-order key of the rows inside the
-- window, with one index probe per hour of the window (per 4096 positions of
-- a position range), and then walk the commit-order index from the one to the
-- other only. The probes are exact, whatever order the events occurred in:
-- an event whose occurred_at is far from its neighbours' is found in its own
-- hour.
--
-- Both indexes hold their filter column and commit_order as INCLUDE
-- columns, so that the probes are index-only scans, also at the edges of a
-- window where they skip the entries outside it. They hold the
-- commit-order key as a number (commit_order::text::numeric, the same
-- order): a condition on commit_order itself then matches no column of
-- theirs, so the planner cannot pick them, instead of
-- event_store_commit_order_idx, for the walk between the bounds.

-- On a large store, build the two indexes by hand first, with CREATE INDEX
-- CONCURRENTLY and the same definitions: this migration then finds them
-- (IF NOT EXISTS) and does nothing. Built here, they hold back writes, and
-- commit-order readers of every database of the server, while they build.

-- +goose Up
CREATE INDEX IF NOT EXISTS event_store_hour_idx ON event_store
    ((date_trunc('hour', occurred_at AT TIME ZONE 'UTC')), (commit_order::text::numeric)) INCLUDE (occurred_at, commit_order);
CREATE INDEX IF NOT EXISTS event_store_position_block_idx ON event_store
    ((id / 4096), (commit_order::text::numeric)) INCLUDE (id, commit_order);

-- +goose Down
DROP INDEX IF EXISTS event_store_position_block_idx;
DROP INDEX IF EXISTS event_store_hour_idx;
