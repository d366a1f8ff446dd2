-- Parked events (G9): events a relay partition set aside because the broker
-- refuses them in a way that publishing again cannot fix, and the later
-- events of their streams, which wait behind them. The relay leading the
-- partition loads them when it takes the lease, and publishes the ones
-- marked retry_requested again, in order, before newer events of their
-- streams. event_store stays append-only: this table is the only record.
-- Times are INTEGER microseconds since the Unix epoch, as in event_store.

-- +goose Up
CREATE TABLE eventbus_parked_events (
    relay           TEXT    NOT NULL,
    "partition"     INTEGER NOT NULL,
    event_id        TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    stream          TEXT    NOT NULL DEFAULT '', -- '' for an event without a stream
    stream_version  INTEGER NOT NULL DEFAULT 0,
    reason          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    parked_at       INTEGER NOT NULL,
    last_attempt_at INTEGER NOT NULL,
    retry_requested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (relay, "partition", event_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX eventbus_parked_events_position_idx ON eventbus_parked_events (relay, position);

-- +goose Down
DROP TABLE eventbus_parked_events;
