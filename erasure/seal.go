package erasure

import (
	"bytes"
	"context"
	"fmt"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// Sealing returns s with the personal fields of every appended event
// encrypted before they reach the store (see the package documentation).
// A bus built on it (eventbus.New) seals whatever way it appends:
// Dispatch, DispatchTx, Append, AppendTx. Reads pass through unchanged:
// read through store.Transformed with the keyring's Transform.
//
// When s implements store.SubjectKeysTx[TTx], a subject's first key is
// created in the caller's transaction, so that it commits with the events
// encrypted under it, or not at all; otherwise in a transaction of its own
// before the append.
func Sealing[TTx any](s store.TxStore[TTx], k *Keyring) store.TxStore[TTx] {
	inTx, _ := s.(store.SubjectKeysTx[TTx])
	return &sealing[TTx]{TxStore: s, k: k, inTx: inTx}
}

type sealing[TTx any] struct {
	store.TxStore[TTx]
	k    *Keyring
	inTx store.SubjectKeysTx[TTx]
}

// Unwrap returns the store underneath.
func (s *sealing[TTx]) Unwrap() store.Store { return s.TxStore }

func (s *sealing[TTx]) Append(ctx context.Context, drafts []event.Draft) ([]store.Appended, error) {
	sealed, back, err := s.k.seal(ctx, drafts, s.k.keys.PutSubjectKeys)
	if err != nil {
		return nil, err
	}
	res, err := s.TxStore.Append(ctx, sealed)
	if err != nil {
		return nil, err
	}
	return res, s.k.restore(ctx, res, back)
}

func (s *sealing[TTx]) AppendTx(ctx context.Context, tx TTx, drafts []event.Draft) ([]store.Appended, error) {
	put := s.k.keys.PutSubjectKeys
	if s.inTx != nil {
		put = func(ctx context.Context, keys []store.SubjectKey) (map[string]store.SubjectKey, error) {
			return s.inTx.PutSubjectKeysTx(ctx, tx, keys)
		}
	}
	sealed, back, err := s.k.seal(ctx, drafts, put)
	if err != nil {
		return nil, err
	}
	res, err := s.TxStore.AppendTx(ctx, tx, sealed)
	if err != nil {
		return nil, err
	}
	return res, s.k.restore(ctx, res, back)
}

// readable is what an appended event reads as: its data before sealing, or
// with its personal fields null when its subject was already erased.
type readable struct {
	data   []byte
	erased bool
}

var sealedKeyQuoted = []byte(`"` + event.SealedKey + `"`)

// seal returns a copy of drafts with their personal fields encrypted, and
// what each reads as. Keys missing from the store are created with put.
func (k *Keyring) seal(ctx context.Context, drafts []event.Draft, put func(context.Context, []store.SubjectKey) (map[string]store.SubjectKey, error)) ([]event.Draft, []readable, error) {
	var personal []event.PersonalData
	var at []int
	var subjects []string
	seen := map[string]bool{}
	for i := range drafts {
		d := &drafts[i]
		if d.Type == event.TypeDataSubjectErased {
			return nil, nil, &event.PersonalError{Index: i, Field: "type",
				Reason: "is reserved: only an erasure (POST /v1/data-subjects/{id}/erase) records " + event.TypeDataSubjectErased}
		}
		p, ok, err := k.registry.PersonalOf(d, i)
		if err != nil {
			return nil, nil, err
		}
		if !ok || len(p.Fields) == 0 {
			// No personal data, or a subject with no field to erase
			// (lesson.published): nothing to encrypt, no key to make.
			if hasSealedMember(d.Data) {
				return nil, nil, &event.PersonalError{Index: i, Field: "data." + event.SealedKey,
					Reason: "is a reserved name; the bus stores encrypted personal fields under it"}
			}
			continue
		}
		personal = append(personal, p)
		at = append(at, i)
		if !seen[p.DataSubject] {
			seen[p.DataSubject] = true
			subjects = append(subjects, p.DataSubject)
		}
	}
	if len(at) == 0 {
		return drafts, nil, nil
	}
	keys, err := k.writeKeys(ctx, subjects, put)
	if err != nil {
		return nil, nil, err
	}
	out := make([]event.Draft, len(drafts))
	copy(out, drafts)
	back := make([]readable, len(drafts))
	for j, i := range at {
		d := &out[i]
		p := personal[j]
		aead := keys[p.DataSubject].aead
		data, sealed, err := sealData(d.ID, p, d.Data, aead)
		if err != nil {
			if pe, ok := err.(*event.PersonalError); ok {
				pe.Index = i
				return nil, nil, pe
			}
			return nil, nil, fmt.Errorf("event %d: %w", i, err)
		}
		if !sealed {
			continue
		}
		back[i] = readable{data: d.Data, erased: aead == nil}
		if aead == nil {
			back[i].data = nulled(data)
		}
		d.Data = data
		d.Personal = nil
	}
	return out, back, nil
}

// nulled is sealed data as a reader gets it once erased.
func nulled(sealed []byte) []byte {
	sm, ms, at, ok, err := sealedOf(sealed)
	if err != nil || !ok {
		return sealed
	}
	out, err := openData([16]byte{}, sealed, sm, ms, at, nil)
	if err != nil {
		return sealed
	}
	return out
}

// restore gives appended events the data readers get: the caller's own for
// the events just stored, and the stored original, opened, for duplicates.
func (k *Keyring) restore(ctx context.Context, res []store.Appended, back []readable) error {
	var dups []int
	for i := range res {
		switch {
		case res[i].Duplicate:
			dups = append(dups, i)
		case back != nil && back[i].data != nil:
			res[i].Envelope.Data = back[i].data
			res[i].Envelope.Erased = back[i].erased
		}
	}
	if len(dups) == 0 {
		return nil
	}
	envs := make([]event.Envelope, len(dups))
	for j, i := range dups {
		envs[j] = res[i].Envelope
	}
	if err := k.Open(ctx, envs); err != nil {
		return err
	}
	for j, i := range dups {
		res[i].Envelope = envs[j]
	}
	return nil
}

// writeKeys returns the keys to encrypt with for subjects: the cached
// ones, and for the others what put stores: a new key for a subject that
// has none, the stored key or tombstone for the rest, in one round trip.
// Nothing put returns is cached: a key created in the caller's
// transaction is not known to exist until that commits. Reads cache the
// keys once they are committed.
func (k *Keyring) writeKeys(ctx context.Context, subjects []string, put func(context.Context, []store.SubjectKey) (map[string]store.SubjectKey, error)) (map[string]cachedKey, error) {
	found, missing := k.lookup(subjects)
	if len(missing) == 0 {
		return found, nil
	}
	fresh, err := k.newSubjectKeys(missing)
	if err != nil {
		return nil, err
	}
	stored, err := put(ctx, fresh)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	made, err := k.unwrapAll(stored)
	if err != nil {
		return nil, err
	}
	for _, s := range missing {
		c, ok := made[s]
		if !ok {
			return nil, fmt.Errorf("erasure: the store kept no key for data subject %s", event.Quote(s))
		}
		found[s] = c
	}
	return found, nil
}

// hasSealedMember reports whether data is an object with a top-level member
// named event.SealedKey.
func hasSealedMember(data []byte) bool {
	if !bytes.Contains(data, sealedKeyQuoted) {
		return false
	}
	ms, err := members(data)
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.is(event.SealedKey) {
			return true
		}
	}
	return false
}
