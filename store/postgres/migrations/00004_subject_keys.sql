-- Keys of data subjects, for erasure by crypto-shredding (G10). The personal
-- fields of an event are stored in event_store encrypted under a key of
-- their data subject's; the key is kept here, itself encrypted (wrapped)
-- under a key-encryption key from the configuration, which kek names.
-- Erasing a subject destroys its key: wrapped_key becomes NULL and
-- erased_at is set, and the row stays as a tombstone so that no key is
-- ever created for the subject again. event_store is never rewritten.
-- eventbus_erasure_epoch counts erasures: readers that cache keys compare
-- it to forget keys destroyed by another process.

-- +goose Up
CREATE TABLE eventbus_subject_keys (
    data_subject text        PRIMARY KEY,
    kek          text        NOT NULL DEFAULT '', -- '' on a tombstone
    wrapped_key  bytea,                           -- NULL once erased
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    erased_at    timestamptz,
    CONSTRAINT eventbus_subject_keys_erased CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
CREATE TABLE eventbus_erasure_epoch (
    id    int    PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL
);
INSERT INTO eventbus_erasure_epoch (id, epoch) VALUES (1, 0);

-- +goose Down
DROP TABLE eventbus_erasure_epoch;
DROP TABLE eventbus_subject_keys;
