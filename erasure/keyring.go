// Package erasure erases personal data by crypto-shredding (DESIGN G10).
//
// Each data subject has a key of its own (AES-256), created when an event
// first carries personal data of the subject, and kept in the store wrapped
// under a key-encryption key (KEK) of the configuration. The personal
// fields of an event are encrypted under the subject's key before the
// event reaches event_store (Sealing), and decrypted as events leave the
// store (Keyring.Open, a store.Transform). Erasing a subject destroys its
// key: from then on its personal fields read as null everywhere, and the
// events that had them are marked erased, while every event stays in the
// record.
//
// The format of the stored data is described in sealed.go.
package erasure

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/store"
)

// DefaultCacheSize is how many subjects' keys a Keyring keeps in memory
// unless told otherwise.
const DefaultCacheSize = 10000

// Config configures a Keyring.
type Config struct {
	// Keys is where the subject keys live: the store.
	Keys store.SubjectKeys
	// KEKs wrap and unwrap the subject keys.
	KEKs *KEKs
	// Registry declares the personal data of event types.
	Registry *event.Registry
	// CacheSize bounds the subjects whose keys are kept in memory. 0:
	// DefaultCacheSize.
	CacheSize int
}

// Keyring encrypts and decrypts personal fields with the subjects' keys,
// which it caches. It is safe for concurrent use.
//
// The cache holds only keys that have committed. It is tagged with the
// store's erasure epoch, which every erasure raises: a read that finds
// the epoch moved forgets every cached key first, so an erasure made by
// another process takes effect on the next read here.
type Keyring struct {
	keys     store.SubjectKeys
	keks     *KEKs
	registry *event.Registry
	max      int

	mu    sync.Mutex
	epoch int64 // the epoch the cache is valid for; -1: unknown
	cache map[string]cachedKey
}

// cachedKey is a subject's unwrapped key, or its tombstone (aead nil).
type cachedKey struct {
	aead cipher.AEAD
}

// New returns a Keyring.
func New(cfg Config) (*Keyring, error) {
	if cfg.Keys == nil || cfg.KEKs == nil {
		return nil, errors.New("erasure: a keyring needs the store's keys and the key-encryption keys")
	}
	k := &Keyring{keys: cfg.Keys, keks: cfg.KEKs, registry: cfg.Registry, max: cfg.CacheSize,
		epoch: -1, cache: map[string]cachedKey{}}
	if k.registry == nil {
		k.registry = event.NewRegistry()
	}
	if k.max <= 0 {
		k.max = DefaultCacheSize
	}
	return k, nil
}

// KEKs returns the keyring's key-encryption keys.
func (k *Keyring) KEKs() *KEKs { return k.keks }

// lookup returns the cached keys of subjects, and the ones it lacks.
func (k *Keyring) lookup(subjects []string) (map[string]cachedKey, []string) {
	found := make(map[string]cachedKey, len(subjects))
	var missing []string
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, s := range subjects {
		if c, ok := k.cache[s]; ok {
			found[s] = c
		} else {
			missing = append(missing, s)
		}
	}
	return found, missing
}

// remember caches keys read at epoch (committed keys only). A newer epoch
// forgets the cache first; keys read at an older epoch than the cache's
// are not kept: an erasure may have destroyed them since.
func (k *Keyring) remember(epoch int64, keys map[string]cachedKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case epoch < k.epoch:
		return
	case epoch > k.epoch:
		clear(k.cache)
		k.epoch = epoch
	}
	for s, c := range keys {
		if len(k.cache) >= k.max {
			// Bounded: drop about a quarter, whichever the map yields.
			drop := k.max / 4
			for victim := range k.cache {
				if drop <= 0 {
					break
				}
				delete(k.cache, victim)
				drop--
			}
		}
		k.cache[s] = c
	}
}

// forget drops every cached key, after an erasure in this process.
func (k *Keyring) forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.cache)
	k.epoch = -1
}

// unwrapAll turns stored keys into cached ones.
func (k *Keyring) unwrapAll(stored map[string]store.SubjectKey) (map[string]cachedKey, error) {
	out := make(map[string]cachedKey, len(stored))
	for s, sk := range stored {
		if sk.Erased() {
			out[s] = cachedKey{}
			continue
		}
		dek, err := k.keks.unwrap(sk)
		if err != nil {
			return nil, err
		}
		aead, err := newAEAD(dek)
		if err != nil {
			return nil, err
		}
		out[s] = cachedKey{aead: aead}
	}
	return out, nil
}

// readKeys returns the committed keys of subjects, from the cache when the
// store's erasure epoch has not moved. A subject without a key row gets a
// tombstone: its events cannot be read (the row is gone, as after a
// partial restore), and they read as erased rather than stopping the
// readers.
func (k *Keyring) readKeys(ctx context.Context, subjects []string) (map[string]cachedKey, error) {
	found, missing := k.lookup(subjects)
	if len(missing) == 0 {
		epoch, err := k.keys.ErasureEpoch(ctx)
		if err != nil {
			return nil, fmt.Errorf("erasure: %w", err)
		}
		k.mu.Lock()
		same := epoch == k.epoch
		k.mu.Unlock()
		if same {
			return found, nil
		}
		missing = subjects
	}
	stored, epoch, err := k.keys.SubjectKeys(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	fresh, err := k.unwrapAll(stored)
	if err != nil {
		return nil, err
	}
	k.remember(epoch, fresh)
	for _, s := range missing {
		c, ok := fresh[s]
		if !ok {
			c = cachedKey{}
		}
		found[s] = c
	}
	return found, nil
}

// Open is the read transform (a store.Transform): it decrypts the
// personal fields of events in place, or leaves them null and marks the
// event Erased when their subject is erased. Events without personal
// data are left as they are, byte for byte.
func (k *Keyring) Open(ctx context.Context, events []event.Envelope) error {
	type pending struct {
		i  int
		sm sealedMember
		ms []member
		at int
	}
	var todo []pending
	var subjects []string
	seen := map[string]bool{}
	for i := range events {
		sm, ms, at, ok, err := sealedOf(events[i].Data)
		if err != nil {
			return fmt.Errorf("erasure: event %s: %w", events[i].ID, err)
		}
		if !ok {
			continue
		}
		todo = append(todo, pending{i: i, sm: sm, ms: ms, at: at})
		if !sm.Erased && !seen[sm.Subject] {
			seen[sm.Subject] = true
			subjects = append(subjects, sm.Subject)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	var keys map[string]cachedKey
	if len(subjects) > 0 {
		var err error
		if keys, err = k.readKeys(ctx, subjects); err != nil {
			return err
		}
	}
	var o opener
	for _, p := range todo {
		e := &events[p.i]
		aead := keys[p.sm.Subject].aead
		if p.sm.Erased {
			aead = nil
		}
		data, err := o.open(e.ID, e.Data, p.sm, p.ms, p.at, aead)
		if err != nil {
			return fmt.Errorf("erasure: %w", err)
		}
		e.Data = data
		if aead == nil {
			e.Erased = true
		}
	}
	return nil
}

// Transform returns Open as a store.Transform.
func (k *Keyring) Transform() store.Transform { return k.Open }

// newSubjectKeys makes new keys for subjects, wrapped.
func (k *Keyring) newSubjectKeys(subjects []string) ([]store.SubjectKey, error) {
	out := make([]store.SubjectKey, len(subjects))
	dek := make([]byte, KeySize)
	for i, s := range subjects {
		if _, err := rand.Read(dek); err != nil {
			return nil, fmt.Errorf("erasure: new subject key: %w", err)
		}
		sk, err := k.keks.wrap(s, dek)
		if err != nil {
			return nil, err
		}
		out[i] = sk
	}
	clear(dek)
	return out, nil
}

// Erase destroys subject's key and appends record (the datasubject.erased
// event, complete: see eventbus.Bus.Prepare) with it, then forgets the
// cached keys. Erasing an unknown or erased subject succeeds.
func (k *Keyring) Erase(ctx context.Context, subject string, record event.Draft) (store.Erasure, error) {
	res, err := k.keys.EraseSubject(ctx, subject, record)
	// Forget even on an error: the erasure may have committed.
	k.forget()
	if err != nil {
		return store.Erasure{}, fmt.Errorf("erasure: %w", err)
	}
	return res, nil
}

// Rotate rewraps every live subject key that is not wrapped under the
// primary KEK, and returns how many it rewrapped. Readers keep working
// throughout: a key is readable under the old KEK until its row is
// rewrapped, and under the new one after. Run it again after a failure:
// it goes on where it stopped.
func (k *Keyring) Rotate(ctx context.Context) (int, error) {
	const page = 500
	n := 0
	after := ""
	for {
		keys, err := k.keys.ListSubjectKeys(ctx, after, page)
		if err != nil {
			return n, fmt.Errorf("erasure: rotate: %w", err)
		}
		for _, sk := range keys {
			after = sk.Subject
			if sk.KEK == k.keks.Primary() {
				continue
			}
			dek, err := k.keks.unwrap(sk)
			if err != nil {
				return n, fmt.Errorf("erasure: rotate: %w", err)
			}
			next, err := k.keks.wrap(sk.Subject, dek)
			clear(dek)
			if err != nil {
				return n, fmt.Errorf("erasure: rotate: %w", err)
			}
			switch err := k.keys.RewrapSubjectKey(ctx, sk, next); {
			case errors.Is(err, store.ErrKeyChanged):
				// Erased meanwhile (or rewrapped by another rotation).
			case err != nil:
				return n, fmt.Errorf("erasure: rotate: %w", err)
			default:
				n++
			}
		}
		if len(keys) < page {
			return n, nil
		}
	}
}
