-- Parked events (G9): events a relay partition set aside because the broker
-- refuses them in a way that publishing again cannot fix, and the later
-- events of their streams, which wait behind them. The relay leading the
-- partition loads them when it takes the lease, and publishes the ones
-- marked retry_requested again, in order, before newer events of their
-- streams. event_store stays append-only: this table is the only record.

-- +goose Up
CREATE TABLE eventbus_parked_events (
    relay           text        NOT NULL,
    partition       int         NOT NULL,
    event_id        uuid        NOT NULL,
    position        bigint      NOT NULL,
    type            text        NOT NULL,
    stream          text        NOT NULL DEFAULT '', -- '' for an event without a stream
    stream_version  bigint      NOT NULL DEFAULT 0,
    reason          text        NOT NULL,
    attempts        int         NOT NULL DEFAULT 0,
    parked_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    retry_requested boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (relay, partition, event_id)
);
CREATE INDEX eventbus_parked_events_position_idx ON eventbus_parked_events (relay, position);

-- +goose Down
DROP TABLE eventbus_parked_events;
