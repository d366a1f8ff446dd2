-- A coarser level for the bounds of time windows (issue 20).
--
-- Migration 00005 bounds a time window with one probe of
-- event_store_hour_idx per hour. A window with only since= or only until=
-- spans the store's history to its newest or from its oldest event, so its
-- probes grew with the time the store covers. With this index a read probes
-- the hours at a window's edges (at most 24 at each end) in the hour index,
-- and the whole days between them here, one probe per day that holds events.

-- +goose Up
CREATE INDEX event_store_day_idx ON event_store ((occurred_at / 86400000000), id);

-- +goose Down
DROP INDEX event_store_day_idx;
