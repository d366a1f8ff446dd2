-- Type versions (DESIGN "Type versions"): every event records the version
-- of its data as its CloudEvents dataschema,
-- urn:edupulse:schema:{type}:{version}. The data stays as written; readers
-- upcast it to the latest version unless they ask for the stored one. A row
-- written before this migration has no dataschema: its type had one version
-- then, so it is version 1. For an event of a type the bus does not know,
-- dataschema is what its producer sent, if anything.
--
-- eventbus_append takes and returns the dataschema too: a new function
-- with one more array argument than version 3's (stream hashes). The
-- functions of versions 1 and 3 stay, so that processes of an older build
-- keep appending during a rolling upgrade; their rows have no dataschema
-- and read as version 1, which is the only version an older build knows.

-- +goose Up
ALTER TABLE event_store ADD COLUMN dataschema text;

-- +goose StatementBegin
CREATE FUNCTION eventbus_append(
    p_event_ids       uuid[],
    p_types           text[],
    p_sources         text[],
    p_subjects        text[],
    p_occurred_at     timestamptz[],
    p_correlation_ids uuid[],
    p_causation_ids   uuid[],
    p_traceparents    text[],
    p_tracestates     text[],
    p_data            text[],
    p_expected        bigint[],
    p_stream_hashes   bigint[],
    p_dataschemas     text[])
RETURNS TABLE (
    r_ord            int,
    r_duplicate      boolean,
    r_id             bigint,
    r_type           text,
    r_source         text,
    r_subject        text,
    r_stream_version bigint,
    r_occurred_at    timestamptz,
    r_recorded_at    timestamptz,
    r_correlation_id uuid,
    r_causation_id   uuid,
    r_traceparent    text,
    r_tracestate     text,
    r_data           text,
    r_commit_order   xid8,
    r_dataschema     text)
LANGUAGE plpgsql AS $$
DECLARE
    v_me         xid8 := pg_current_xact_id();
    v_dups       int;
    v_dup_ids    uuid[] := '{}';
    v_inserted   int;
    v_subject    text;
    v_version    bigint;
    v_head_order xid8;
BEGIN
    IF cardinality(p_event_ids) = 1 THEN
        -- One event, the common case: plain statements on scalars, each an
        -- index probe, cost a third of the set-based path below. The insert
        -- comes first and finds a duplicate itself (ON CONFLICT), which
        -- saves a probe of event_id for every new event; only a duplicate
        -- pays the lookup of its original. An insert that meets an event
        -- of the same ID still being written waits for it: once it has
        -- committed, the lookup (a statement of its own, with a newer
        -- snapshot) finds it.
        r_ord := 1;
        v_subject := p_subjects[1];
        IF v_subject IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(hashtextextended(v_subject, 0));
            SELECT e.stream_version, e.commit_order INTO v_version, v_head_order
              FROM event_store e WHERE e.subject = v_subject ORDER BY e.stream_version DESC LIMIT 1;
            v_version := coalesce(v_version, 0) + 1;
            v_me := greatest(v_me, v_head_order);
        END IF;
        IF v_subject IS NULL OR p_expected[1] IS NULL OR p_expected[1] = v_version - 1 THEN
            INSERT INTO event_store AS e (event_id, type, source, subject, stream_version, occurred_at,
                                          correlation_id, causation_id, traceparent, tracestate, data, commit_order,
                                          stream_hash, dataschema)
            VALUES (p_event_ids[1], p_types[1], p_sources[1], v_subject, v_version, p_occurred_at[1],
                    p_correlation_ids[1], p_causation_ids[1], p_traceparents[1], p_tracestates[1],
                    p_data[1]::json, v_me, p_stream_hashes[1], p_dataschemas[1])
            ON CONFLICT (event_id) DO NOTHING
            RETURNING e.id, e.stream_version, e.recorded_at, e.commit_order
                 INTO r_id, r_stream_version, r_recorded_at, r_commit_order;
            IF FOUND THEN
                r_duplicate := false;
                RETURN NEXT;
                RETURN;
            END IF;
        END IF;
        -- A duplicate (or a stream not at the expected version): a stored
        -- original wins over a version conflict, so that a retry of a
        -- dispatch that committed returns what it stored.
        SELECT true, e.id, e.type, e.source, e.subject, e.stream_version, e.occurred_at, e.recorded_at,
               e.correlation_id, e.causation_id, e.traceparent, e.tracestate, e.data::text, e.commit_order, e.dataschema
          INTO r_duplicate, r_id, r_type, r_source, r_subject, r_stream_version, r_occurred_at, r_recorded_at,
               r_correlation_id, r_causation_id, r_traceparent, r_tracestate, r_data, r_commit_order, r_dataschema
          FROM event_store e WHERE e.event_id = p_event_ids[1];
        IF FOUND THEN
            RETURN NEXT;
            RETURN;
        END IF;
        IF v_subject IS NOT NULL AND p_expected[1] IS NOT NULL AND p_expected[1] <> v_version - 1 THEN
            PERFORM eventbus_version_conflict(v_subject, v_version - 1, p_expected[1]);
        END IF;
        -- The insert found it, the lookup did not: it committed after this
        -- transaction's snapshot (REPEATABLE READ or stricter).
        RAISE EXCEPTION 'event % was stored concurrently by another transaction', p_event_ids[1]
            USING ERRCODE = 'EB002';
    END IF;

    -- Events already stored come back as they were stored. Each is looked up
    -- on its own: LIMIT 1 keeps the planner from turning the probes into a
    -- join, which with a small table's statistics becomes a sequential scan
    -- and stays cached as the table grows.
    RETURN QUERY
    SELECT i.ord::int, true, e.id, e.type, e.source, e.subject, e.stream_version, e.occurred_at,
           e.recorded_at, e.correlation_id, e.causation_id, e.traceparent, e.tracestate,
           e.data::text, e.commit_order, e.dataschema
      FROM unnest(p_event_ids) WITH ORDINALITY AS i(event_id, ord)
      CROSS JOIN LATERAL (SELECT * FROM event_store s WHERE s.event_id = i.event_id LIMIT 1) e;
    GET DIAGNOSTICS v_dups = ROW_COUNT;
    IF v_dups = cardinality(p_event_ids) THEN
        RETURN;
    END IF;
    IF v_dups > 0 THEN
        SELECT array_agg(e.event_id) INTO v_dup_ids
          FROM unnest(p_event_ids) AS i(event_id)
          CROSS JOIN LATERAL (SELECT s.event_id FROM event_store s WHERE s.event_id = i.event_id LIMIT 1) e;
    END IF;

    PERFORM pg_advisory_xact_lock(x.h)
       FROM (SELECT DISTINCT hashtextextended(s.subject, 0) AS h
               FROM unnest(p_subjects) AS s(subject)
              WHERE s.subject IS NOT NULL
              ORDER BY 1) x;

    RETURN QUERY
    WITH input AS (
        SELECT *
          FROM unnest(p_event_ids, p_types, p_sources, p_subjects, p_occurred_at, p_correlation_ids,
                      p_causation_ids, p_traceparents, p_tracestates, p_data, p_expected, p_stream_hashes, p_dataschemas)
               WITH ORDINALITY AS i(event_id, type, source, subject, occurred_at, correlation_id,
                                    causation_id, traceparent, tracestate, data, expected, stream_hash, dataschema, ord)
         WHERE NOT (i.event_id = ANY (v_dup_ids))
    ), heads AS (
        SELECT d.subject, coalesce(h.stream_version, 0) AS base,
               greatest(h.commit_order, v_me) AS commit_order
          FROM (SELECT DISTINCT i.subject FROM input i WHERE i.subject IS NOT NULL) d
          LEFT JOIN LATERAL (
                SELECT e.stream_version, e.commit_order FROM event_store e
                 WHERE e.subject = d.subject ORDER BY e.stream_version DESC LIMIT 1) h ON true
    ), numbered AS (
        SELECT i.*,
               h.base + row_number() OVER (PARTITION BY i.subject ORDER BY i.ord) AS version,
               coalesce(h.commit_order, v_me) AS commit_order
          FROM input i LEFT JOIN heads h ON h.subject = i.subject
    ), inserted AS (
        INSERT INTO event_store AS e (event_id, type, source, subject, stream_version, occurred_at,
                                      correlation_id, causation_id, traceparent, tracestate, data, commit_order,
                                      stream_hash, dataschema)
        SELECT n.event_id, n.type, n.source, n.subject,
               CASE WHEN n.expected IS NOT NULL AND n.expected <> n.version - 1
                    THEN eventbus_version_conflict(n.subject, n.version - 1, n.expected)
                    ELSE n.version END,
               n.occurred_at, n.correlation_id, n.causation_id, n.traceparent, n.tracestate,
               n.data::json, n.commit_order, n.stream_hash, n.dataschema
          FROM numbered n ORDER BY n.ord
        ON CONFLICT (event_id) DO NOTHING
        RETURNING e.id, e.event_id, e.stream_version, e.recorded_at, e.commit_order
    )
    SELECT n.ord::int, false, ins.id, NULL::text, NULL::text, NULL::text, ins.stream_version,
           NULL::timestamptz, ins.recorded_at, NULL::uuid, NULL::uuid, NULL::text, NULL::text,
           NULL::text, ins.commit_order, NULL::text
      FROM inserted ins JOIN numbered n ON n.event_id = ins.event_id;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF v_inserted <> cardinality(p_event_ids) - v_dups THEN
        RAISE EXCEPTION 'an event of this batch was stored concurrently by another transaction'
            USING ERRCODE = 'EB002';
    END IF;
END;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION eventbus_append(uuid[], text[], text[], text[], timestamptz[], uuid[], uuid[], text[], text[], text[], bigint[], bigint[], text[]);
ALTER TABLE event_store DROP COLUMN dataschema;
