package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

var (
	_ store.SubjectKeys           = (*Store)(nil)
	_ store.SubjectKeysTx[pgx.Tx] = (*Store)(nil)
)

const subjectKeyColumns = `data_subject, kek, wrapped_key, created_at, erased_at`

func scanSubjectKey(r pgx.Row) (store.SubjectKey, error) {
	var k store.SubjectKey
	var erased *time.Time
	if err := r.Scan(&k.Subject, &k.KEK, &k.Wrapped, &k.CreatedAt, &erased); err != nil {
		return k, err
	}
	if erased != nil {
		k.ErasedAt = *erased
	}
	return k, nil
}

func collectSubjectKeys(rows pgx.Rows, err error) (map[string]store.SubjectKey, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.SubjectKey{}
	for rows.Next() {
		k, err := scanSubjectKey(rows)
		if err != nil {
			return nil, err
		}
		out[k.Subject] = k
	}
	return out, rows.Err()
}

// SubjectKeys returns the committed keys of subjects, and the erasure
// epoch, in one round trip.
func (s *Store) SubjectKeys(ctx context.Context, subjects []string) (map[string]store.SubjectKey, int64, error) {
	var epoch int64
	b := &pgx.Batch{}
	b.Queue(`SELECT epoch FROM eventbus_erasure_epoch WHERE id = 1`).QueryRow(func(r pgx.Row) error { return r.Scan(&epoch) })
	var keys map[string]store.SubjectKey
	b.Queue(`SELECT `+subjectKeyColumns+` FROM eventbus_subject_keys WHERE data_subject = ANY($1)`, subjects).Query(
		func(rows pgx.Rows) error {
			var err error
			keys, err = collectSubjectKeys(rows, nil)
			return err
		})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, s.wrap(err, fmt.Sprintf("read the keys of %d data subjects", len(subjects)))
	}
	return keys, epoch, nil
}

// ErasureEpoch returns how many erasures the store has recorded.
func (s *Store) ErasureEpoch(ctx context.Context) (int64, error) {
	var epoch int64
	err := s.pool.QueryRow(ctx, `SELECT epoch FROM eventbus_erasure_epoch WHERE id = 1`).Scan(&epoch)
	return epoch, s.wrap(err, "read the erasure epoch")
}

// PutSubjectKeys stores the keys of subjects that have none, in a
// transaction of its own: one statement, one round trip.
func (s *Store) PutSubjectKeys(ctx context.Context, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
	return s.putSubjectKeys(ctx, s.pool, keys)
}

// PutSubjectKeysTx stores the keys of subjects that have none, in tx.
func (s *Store) PutSubjectKeysTx(ctx context.Context, tx pgx.Tx, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
	return s.putSubjectKeys(ctx, tx, keys)
}

// putSubjectKeys inserts the keys whose subjects have none and returns the
// keys stored for every subject, in one statement. It inserts in subject
// order, so that two transactions creating the same keys do not deadlock
// on the primary key. A statement that finds a key another transaction is
// inserting waits for it; the key committed then is not in the statement's
// snapshot, so a second query reads it.
func (s *Store) putSubjectKeys(ctx context.Context, q querier, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b store.SubjectKey) int { return strings.Compare(a.Subject, b.Subject) })
	sorted = slices.CompactFunc(sorted, func(a, b store.SubjectKey) bool { return a.Subject == b.Subject })
	subjects := make([]string, len(sorted))
	keks := make([]string, len(sorted))
	wrapped := make([][]byte, len(sorted))
	for i, k := range sorted {
		if len(k.Wrapped) == 0 || k.KEK == "" {
			return nil, fmt.Errorf("postgres: store the key of data subject %s: no wrapped key", event.Quote(k.Subject))
		}
		subjects[i], keks[i], wrapped[i] = k.Subject, k.KEK, k.Wrapped
	}
	op := fmt.Sprintf("store the keys of %d data subjects", len(sorted))
	out, err := collectSubjectKeys(q.Query(ctx, `
		WITH ins AS (
			INSERT INTO eventbus_subject_keys (data_subject, kek, wrapped_key)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) ORDER BY 1
			ON CONFLICT (data_subject) DO NOTHING
			RETURNING `+subjectKeyColumns+`)
		SELECT `+subjectKeyColumns+` FROM ins
		UNION ALL
		SELECT `+subjectKeyColumns+` FROM eventbus_subject_keys
		 WHERE data_subject = ANY($1) AND data_subject NOT IN (SELECT data_subject FROM ins)`, subjects, keks, wrapped))
	if err != nil {
		return nil, s.wrap(err, op)
	}
	if len(out) < len(subjects) {
		again, err := collectSubjectKeys(q.Query(ctx,
			`SELECT `+subjectKeyColumns+` FROM eventbus_subject_keys WHERE data_subject = ANY($1)`, subjects))
		if err != nil {
			return nil, s.wrap(err, op)
		}
		out = again
	}
	return out, nil
}

// EraseSubject destroys subject's key and appends record, in one
// transaction. The key's row lock orders it with a transaction that is
// inserting the subject's first key: the erasure waits for it and then
// destroys that key too.
func (s *Store) EraseSubject(ctx context.Context, subject string, record event.Draft) (store.Erasure, error) {
	if err := store.CheckDrafts([]event.Draft{record}); err != nil {
		return store.Erasure{}, err
	}
	out := store.Erasure{Subject: subject}
	op := "erase data subject " + event.Quote(subject)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
			INSERT INTO eventbus_subject_keys AS k (data_subject, kek, wrapped_key, erased_at)
			VALUES ($1, '', NULL, clock_timestamp())
			ON CONFLICT (data_subject) DO UPDATE
			   SET kek = '', wrapped_key = NULL, erased_at = COALESCE(k.erased_at, excluded.erased_at)
			RETURNING erased_at`, subject).Scan(&out.ErasedAt); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE eventbus_erasure_epoch SET epoch = epoch + 1 WHERE id = 1`); err != nil {
			return err
		}
		res, err := s.AppendTx(ctx, tx, []event.Draft{record})
		if err != nil {
			return err
		}
		out.Recorded = res[0]
		return nil
	})
	if err != nil {
		return store.Erasure{}, s.wrap(err, op)
	}
	return out, nil
}

// ListSubjectKeys returns live keys by subject, after after.
func (s *Store) ListSubjectKeys(ctx context.Context, after string, limit int) ([]store.SubjectKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subjectKeyColumns+` FROM eventbus_subject_keys
		WHERE data_subject > $1 AND wrapped_key IS NOT NULL ORDER BY data_subject LIMIT $2`, after, limit)
	if err != nil {
		return nil, s.wrap(err, "list subject keys")
	}
	defer rows.Close()
	var out []store.SubjectKey
	for rows.Next() {
		k, err := scanSubjectKey(rows)
		if err != nil {
			return nil, s.wrap(err, "list subject keys")
		}
		out = append(out, k)
	}
	return out, s.wrap(rows.Err(), "list subject keys")
}

// RewrapSubjectKey replaces a key's wrapping if the row is still old.
func (s *Store) RewrapSubjectKey(ctx context.Context, old, next store.SubjectKey) error {
	tag, err := s.pool.Exec(ctx, `UPDATE eventbus_subject_keys SET kek = $2, wrapped_key = $3
		WHERE data_subject = $1 AND kek = $4 AND wrapped_key = $5`, old.Subject, next.KEK, next.Wrapped, old.KEK, old.Wrapped)
	if err != nil {
		return s.wrap(err, "rewrap the key of data subject "+event.Quote(old.Subject))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: rewrap the key of data subject %s: %w", event.Quote(old.Subject), store.ErrKeyChanged)
	}
	return nil
}
