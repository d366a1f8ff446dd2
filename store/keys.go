package store

import (
	"context"
	"errors"
	"time"

	"github.com/edupulse/eventbus/event"
)

// SubjectKey is a data subject's key as the store keeps it: wrapped
// (encrypted) under a key-encryption key, never in the clear. An erased
// subject's row stays as a tombstone with Wrapped nil and ErasedAt set, so
// that no key is ever created for the subject again.
type SubjectKey struct {
	Subject string
	// KEK identifies the key-encryption key that wrapped the key.
	KEK string
	// Wrapped is the subject's key, encrypted; nil once erased.
	Wrapped   []byte
	CreatedAt time.Time
	// ErasedAt is when the subject was erased; zero while the key lives.
	ErasedAt time.Time
}

// Erased reports whether the key was destroyed.
func (k SubjectKey) Erased() bool { return !k.ErasedAt.IsZero() }

// Erasure is the outcome of SubjectKeys.EraseSubject.
type Erasure struct {
	Subject string
	// ErasedAt is when the subject was first erased: erasing again keeps
	// it.
	ErasedAt time.Time
	// Recorded is the datasubject.erased event, stored with the erasure.
	Recorded Appended
}

// ErrKeyChanged reports that a subject key changed (erased, or rewrapped by
// another process) while RewrapSubjectKeys was rewrapping it; the row was
// left as the other writer made it.
var ErrKeyChanged = errors.New("subject key changed concurrently")

// SubjectKeys keeps the data subjects' keys of crypto-shredding (G10).
// Both stores implement it; package erasure uses it.
type SubjectKeys interface {
	// SubjectKeys returns the committed keys (and tombstones) of the
	// subjects that have one, and the erasure epoch: a number that every
	// erasure raises, so that a cache of keys knows when to forget them.
	SubjectKeys(ctx context.Context, subjects []string) (map[string]SubjectKey, int64, error)
	// PutSubjectKeys stores the keys of subjects that have none, in a
	// transaction of its own, and returns the keys stored for every
	// subject asked, the ones it did not write included: another process's,
	// or a tombstone.
	PutSubjectKeys(ctx context.Context, keys []SubjectKey) (map[string]SubjectKey, error)
	// ErasureEpoch returns the erasure epoch (see SubjectKeys).
	ErasureEpoch(ctx context.Context) (int64, error)
	// EraseSubject destroys subject's key, leaving a tombstone (one is
	// written for a subject who had no key), raises the erasure epoch and
	// appends record, all in one transaction. Erasing an erased subject
	// keeps the first ErasedAt and records the event again.
	EraseSubject(ctx context.Context, subject string, record event.Draft) (Erasure, error)
	// ListSubjectKeys returns up to limit live keys (not tombstones) with
	// subject greater than after, by subject, for KEK rotation.
	ListSubjectKeys(ctx context.Context, after string, limit int) ([]SubjectKey, error)
	// RewrapSubjectKey replaces the wrapped key of old.Subject with next's
	// KEK and Wrapped, if the row is still old (same KEK and Wrapped);
	// else it returns an error wrapping ErrKeyChanged.
	RewrapSubjectKey(ctx context.Context, old, next SubjectKey) error
}

// SubjectKeysTx is implemented by stores that can create subject keys in
// the caller's transaction, the one that appends the events encrypted
// with them: the key then commits with them, or not at all.
type SubjectKeysTx[TTx any] interface {
	// PutSubjectKeysTx is PutSubjectKeys in tx.
	PutSubjectKeysTx(ctx context.Context, tx TTx, keys []SubjectKey) (map[string]SubjectKey, error)
}
