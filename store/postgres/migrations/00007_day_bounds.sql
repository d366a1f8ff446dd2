-- A coarser level for the bounds of time windows (issue 20).
--
-- Migration 00005 bounds a time window with one probe of
-- event_store_hour_idx per hour of the window. A window with only since=
-- or only until= spans the store's history to its newest or from its oldest
-- event, so its probes grew with the time the store covers: about 1,400 for
-- the middle of 90 days, 8,760 for a year. With this index a read probes
-- the hours at a window's edges (at most 24 at each end) in the hour index,
-- and the whole days between them here, one probe per day that holds
-- events (a loose index scan: each probe finds the next such day and its
-- smallest or largest commit-order key at once).
--
-- The key holds the commit-order key as a number, as in 00005, so that the
-- planner never picks this index for a walk in commit order, and the
-- columns of its expressions as INCLUDE columns, so that a probe is an
-- index-only scan (PostgreSQL reads an expression's columns, not the
-- expression, from an index).

-- On a large store, build the index by hand first, with CREATE INDEX
-- CONCURRENTLY and the same definition: this migration then finds it (IF
-- NOT EXISTS) and does nothing.

-- +goose Up
CREATE INDEX IF NOT EXISTS event_store_day_idx ON event_store
    ((date_trunc('day', occurred_at AT TIME ZONE 'UTC')), (commit_order::text::numeric)) INCLUDE (occurred_at, commit_order);

-- +goose Down
DROP INDEX IF EXISTS event_store_day_idx;
