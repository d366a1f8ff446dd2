-- An index that bounds time-window reads in commit order (issue 20).
--
-- Here the commit order is the position (id). A read of a time window
-- (since/until) used to walk positions from the cursor, throwing away the
-- events outside the window, on to the end of the table. This index lets
-- it first find the smallest and largest position inside the window, with
-- one probe per hour of the window, and then read that range of positions
-- only. The probes are exact, whatever order the events occurred in: an
-- event whose occurred_at is far from its neighbours' is found in its own
-- hour. occurred_at is in the index too, so that a probe never reads the
-- table.

-- +goose Up
CREATE INDEX event_store_hour_idx ON event_store ((occurred_at / 3600000000), id, occurred_at);

-- +goose Down
DROP INDEX event_store_hour_idx;
