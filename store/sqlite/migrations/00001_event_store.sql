-- The event store: one row per event, append-only. It is also the outbox:
-- the relay publishes from it in commit order, keeping a checkpoint rather
-- than flagging rows, so a row is written once and never updated.
--
-- Times are INTEGER microseconds since the Unix epoch (UTC), so that events
-- read back exactly as written and compare as numbers. For a readable time:
--   strftime('%Y-%m-%dT%H:%M:%fZ', occurred_at / 1e6, 'unixepoch')
-- UUIDs are TEXT in their canonical lower-case form.

-- +goose Up
CREATE TABLE event_store (
    -- The global position, and the commit-order key as well: SQLite has one
    -- writer at a time, and a writer holds the lock from its first insert to
    -- its commit, so ids are assigned in commit order. AUTOINCREMENT keeps
    -- an id from ever being used twice.
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    subject        TEXT,
    stream_version INTEGER,
    occurred_at    INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT,
    traceparent    TEXT,
    tracestate     TEXT,
    -- The producer's JSON exactly as it was sent: key order, whitespace and
    -- escapes are kept (G6). The json_* functions read it.
    data           TEXT    NOT NULL,
    CONSTRAINT event_store_event_id_key UNIQUE (event_id),
    CONSTRAINT event_store_stream_check CHECK (
        (subject IS NULL AND stream_version IS NULL) OR
        (subject IS NOT NULL AND stream_version > 0))
) STRICT;

-- The stream index also finds a stream's head when appending. Every index
-- ends with the rowid, so the others serve "this filter, in commit order".
CREATE UNIQUE INDEX event_store_stream_idx ON event_store (subject, stream_version) WHERE subject IS NOT NULL;
CREATE INDEX event_store_correlation_idx ON event_store (correlation_id);
CREATE INDEX event_store_type_idx ON event_store (type);
CREATE INDEX event_store_occurred_at_idx ON event_store (occurred_at);

-- +goose StatementBegin
CREATE TRIGGER event_store_no_update BEFORE UPDATE ON event_store
BEGIN
    SELECT RAISE(ABORT, 'event_store is append-only: UPDATE is not allowed');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER event_store_no_delete BEFORE DELETE ON event_store
BEGIN
    SELECT RAISE(ABORT, 'event_store is append-only: DELETE is not allowed');
END;
-- +goose StatementEnd

-- Relay partitions: who publishes each one (a lease on the store's clock)
-- and how far it has published.
CREATE TABLE eventbus_relay_partitions (
    relay            TEXT    NOT NULL,
    "partition"      INTEGER NOT NULL,
    holder           TEXT,
    lease_until      INTEGER,
    checkpoint_order INTEGER NOT NULL DEFAULT 0,
    checkpoint_id    INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (relay, "partition")
) STRICT, WITHOUT ROWID;

-- The consumer inbox: which events each consumer group has handled.
CREATE TABLE eventbus_inbox (
    consumer_group TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    handled_at     INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE eventbus_inbox;
DROP TABLE eventbus_relay_partitions;
DROP TRIGGER event_store_no_delete;
DROP TRIGGER event_store_no_update;
DROP TABLE event_store;
