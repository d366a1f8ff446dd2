-- Type versions (DESIGN "Type versions"): every event records the version
-- of its data as its CloudEvents dataschema,
-- urn:edupulse:schema:{type}:{version}. The data stays as written; readers
-- upcast it to the latest version unless they ask for the stored one. A row
-- written before this migration has no dataschema: its type had one version
-- then, so it is version 1. For an event of a type the bus does not know,
-- dataschema is what its producer sent, if anything.

-- +goose Up
ALTER TABLE event_store ADD COLUMN dataschema TEXT;

-- +goose Down
ALTER TABLE event_store DROP COLUMN dataschema;
