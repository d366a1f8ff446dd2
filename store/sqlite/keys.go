package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

var (
	_ store.SubjectKeys            = (*Store)(nil)
	_ store.SubjectKeysTx[*sql.Tx] = (*Store)(nil)
)

const subjectKeyColumns = `data_subject, kek, wrapped_key, created_at, erased_at`

func scanSubjectKey(r scanner) (store.SubjectKey, error) {
	var k store.SubjectKey
	var created int64
	var erased sql.NullInt64
	if err := r.Scan(&k.Subject, &k.KEK, &k.Wrapped, &created, &erased); err != nil {
		return k, err
	}
	k.CreatedAt = time.UnixMicro(created).UTC()
	if erased.Valid {
		k.ErasedAt = time.UnixMicro(erased.Int64).UTC()
	}
	return k, nil
}

// queryer is a connection pool or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// getSubjectKeys reads the keys of subjects in one query.
func getSubjectKeys(ctx context.Context, q queryer, subjects []string) (map[string]store.SubjectKey, error) {
	list, err := json.Marshal(subjects)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT `+subjectKeyColumns+` FROM eventbus_subject_keys
		WHERE data_subject IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	out := make(map[string]store.SubjectKey, len(subjects))
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
// epoch, read in one read transaction.
func (s *Store) SubjectKeys(ctx context.Context, subjects []string) (map[string]store.SubjectKey, int64, error) {
	op := fmt.Sprintf("read the keys of %d data subjects", len(subjects))
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, s.wrap(err, op)
	}
	defer func() { _ = tx.Rollback() }()
	var epoch int64
	if err := tx.QueryRowContext(ctx, `SELECT epoch FROM eventbus_erasure_epoch WHERE id = 1`).Scan(&epoch); err != nil {
		return nil, 0, s.wrap(err, op)
	}
	keys, err := getSubjectKeys(ctx, tx, subjects)
	if err != nil {
		return nil, 0, s.wrap(err, op)
	}
	return keys, epoch, nil
}

// ErasureEpoch returns how many erasures the store has recorded.
func (s *Store) ErasureEpoch(ctx context.Context) (int64, error) {
	var epoch int64
	err := s.read.QueryRowContext(ctx, `SELECT epoch FROM eventbus_erasure_epoch WHERE id = 1`).Scan(&epoch)
	return epoch, s.wrap(err, "read the erasure epoch")
}

// checkNotInHandler refuses a write of the store's own inside HandleOnce's
// transaction, which holds the only write connection.
func (s *Store) checkNotInHandler(ctx context.Context, op string) error {
	if ctx.Value(handlerKey{}) == s {
		return fmt.Errorf("sqlite: %s: called inside HandleOnce's transaction, which holds the store's only write connection: use the handler's tx", op)
	}
	return nil
}

// PutSubjectKeys stores the keys of subjects that have none, in a
// transaction of its own.
func (s *Store) PutSubjectKeys(ctx context.Context, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
	op := fmt.Sprintf("store the keys of %d data subjects", len(keys))
	if err := s.checkNotInHandler(ctx, op); err != nil {
		return nil, err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	defer func() { _ = tx.Rollback() }()
	out, err := s.PutSubjectKeysTx(ctx, tx, keys)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, s.wrap(err, op+": commit")
	}
	return out, nil
}

// PutSubjectKeysTx stores the keys of subjects that have none, in tx, which
// holds the store's write lock: nobody else writes between the inserts and
// the reads.
func (s *Store) PutSubjectKeysTx(ctx context.Context, tx *sql.Tx, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
	op := fmt.Sprintf("store the keys of %d data subjects", len(keys))
	now := time.Now().UnixMicro()
	subjects := make([]string, len(keys))
	for i, k := range keys {
		if len(k.Wrapped) == 0 || k.KEK == "" {
			return nil, fmt.Errorf("sqlite: store the key of data subject %s: no wrapped key", event.Quote(k.Subject))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO eventbus_subject_keys (data_subject, kek, wrapped_key, created_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (data_subject) DO NOTHING`, k.Subject, k.KEK, k.Wrapped, now); err != nil {
			return nil, s.wrap(err, op)
		}
		subjects[i] = k.Subject
	}
	out, err := getSubjectKeys(ctx, tx, subjects)
	if err != nil {
		return nil, s.wrap(err, op)
	}
	return out, nil
}

// EraseSubject destroys subject's key and appends record, in one
// transaction.
func (s *Store) EraseSubject(ctx context.Context, subject string, record event.Draft) (store.Erasure, error) {
	if err := store.CheckDrafts([]event.Draft{record}); err != nil {
		return store.Erasure{}, err
	}
	op := "erase data subject " + event.Quote(subject)
	if err := s.checkNotInHandler(ctx, op); err != nil {
		return store.Erasure{}, err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return store.Erasure{}, s.wrap(err, op)
	}
	defer func() { _ = tx.Rollback() }()
	out := store.Erasure{Subject: subject}
	var erasedAt int64
	if err := tx.QueryRowContext(ctx, `
		INSERT INTO eventbus_subject_keys (data_subject, kek, wrapped_key, created_at, erased_at)
		VALUES (?1, '', NULL, ?2, ?2)
		ON CONFLICT (data_subject) DO UPDATE
		   SET kek = '', wrapped_key = NULL, erased_at = COALESCE(eventbus_subject_keys.erased_at, excluded.erased_at)
		RETURNING erased_at`, subject, time.Now().UnixMicro()).Scan(&erasedAt); err != nil {
		return store.Erasure{}, s.wrap(err, op)
	}
	out.ErasedAt = time.UnixMicro(erasedAt).UTC()
	if _, err := tx.ExecContext(ctx, `UPDATE eventbus_erasure_epoch SET epoch = epoch + 1 WHERE id = 1`); err != nil {
		return store.Erasure{}, s.wrap(err, op)
	}
	res, err := s.AppendTx(ctx, tx, []event.Draft{record})
	if err != nil {
		return store.Erasure{}, err
	}
	if err := tx.Commit(); err != nil {
		return store.Erasure{}, s.wrap(err, op+": commit")
	}
	out.Recorded = res[0]
	return out, nil
}

// ListSubjectKeys returns live keys by subject, after after.
func (s *Store) ListSubjectKeys(ctx context.Context, after string, limit int) ([]store.SubjectKey, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+subjectKeyColumns+` FROM eventbus_subject_keys
		WHERE data_subject > ? AND wrapped_key IS NOT NULL ORDER BY data_subject LIMIT ?`, after, limit)
	if err != nil {
		return nil, s.wrap(err, "list subject keys")
	}
	defer func() { _ = rows.Close() }()
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
	op := "rewrap the key of data subject " + event.Quote(old.Subject)
	res, err := s.write.ExecContext(ctx, `UPDATE eventbus_subject_keys SET kek = ?, wrapped_key = ?
		WHERE data_subject = ? AND kek = ? AND wrapped_key = ?`, next.KEK, next.Wrapped, old.Subject, old.KEK, old.Wrapped)
	if err != nil {
		return s.wrap(err, op)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap(err, op)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: %s: %w", op, store.ErrKeyChanged)
	}
	return nil
}
