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
-- Both indexes hold their filter column as an INCLUDE column, so that the
-- probes at the edges of a window are index-only scans.

-- +goose Up
CREATE INDEX event_store_hour_idx ON event_store
    ((date_trunc('hour', occurred_at AT TIME ZONE 'UTC')), commit_order) INCLUDE (occurred_at);
CREATE INDEX event_store_position_block_idx ON event_store
    ((id / 4096), commit_order) INCLUDE (id);

-- +goose Down
DROP INDEX event_store_position_block_idx;
DROP INDEX event_store_hour_idx;
