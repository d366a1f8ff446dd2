-- Relay partitions (DESIGN "Partitions"), as in the PostgreSQL store: each
-- event's stream_hash is the FNV-1a hash of its subject (of its event_id
-- without one) that event.PartitionOf splits the relay's work by, computed
-- by the writer. Rows written before this version have none (NULL); readers
-- of a partition place them with event.PartitionOf themselves.
--
-- eventbus_relays records the partition count each relay runs with;
-- eventbus_relay_members lists the live processes of each relay. Times are
-- INTEGER microseconds since the Unix epoch, as in event_store.

-- +goose Up
ALTER TABLE event_store ADD COLUMN stream_hash INTEGER;

CREATE TABLE eventbus_relays (
    relay      TEXT    PRIMARY KEY,
    partitions INTEGER NOT NULL CHECK (partitions > 0),
    changed_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
-- A relay that ran before partitions existed ran with one.
INSERT INTO eventbus_relays (relay, partitions, changed_at)
SELECT relay, max("partition") + 1, CAST(unixepoch('subsec') * 1000000 AS INTEGER)
  FROM eventbus_relay_partitions GROUP BY relay;

CREATE TABLE eventbus_relay_members (
    relay      TEXT    NOT NULL,
    holder     TEXT    NOT NULL,
    partitions INTEGER NOT NULL,
    seen_until INTEGER NOT NULL,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (relay, holder)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE eventbus_relay_members;
DROP TABLE eventbus_relays;
ALTER TABLE event_store DROP COLUMN stream_hash;
