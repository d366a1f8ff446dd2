package erasure

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/edupulse/eventbus/store"
)

// KeySize is the size of every key here: AES-256.
const KeySize = 32

// ErrNoKEK reports a subject key wrapped under a key-encryption key that
// the configuration does not hold.
var ErrNoKEK = errors.New("key-encryption key not configured")

// KEKs are the key-encryption keys of a configuration: the primary one
// wraps new subject keys, the others still unwrap the keys they wrapped,
// while a rotation moves them to the primary (Keyring.Rotate).
type KEKs struct {
	primary string
	byID    map[string]cipher.AEAD
}

// KEKID names a key-encryption key without revealing it: the first 8 bytes
// of its SHA-256, in hex, prefixed "kek-".
func KEKID(key []byte) string {
	sum := sha256.Sum256(key)
	return "kek-" + hex.EncodeToString(sum[:8])
}

// NewKEKs returns the key-encryption keys keys, the first one primary. Each
// is KeySize bytes.
func NewKEKs(keys ...[]byte) (*KEKs, error) {
	if len(keys) == 0 {
		return nil, errors.New("erasure: no key-encryption key")
	}
	k := &KEKs{byID: map[string]cipher.AEAD{}}
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("erasure: key-encryption key %d is %d bytes; it must be %d (AES-256)", i+1, len(key), KeySize)
		}
		aead, err := newAEAD(key)
		if err != nil {
			return nil, err
		}
		id := KEKID(key)
		if i == 0 {
			k.primary = id
		}
		k.byID[id] = aead
	}
	return k, nil
}

// ParseKEKs decodes key-encryption keys written as standard base64, one
// per comma or line, the primary first: the form of EVENTBUS_MASTER_KEY
// and of its file. The error never quotes a key.
func ParseKEKs(text string) (*KEKs, error) {
	fields := strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' })
	var keys [][]byte
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			return nil, fmt.Errorf("erasure: key-encryption key %d is not standard base64", i+1)
		}
		keys = append(keys, key)
	}
	return NewKEKs(keys...)
}

// NewKEKText returns a new random key-encryption key in the form ParseKEKs
// reads.
func NewKEKText() (string, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("erasure: new key-encryption key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// Primary returns the ID of the key that wraps new subject keys.
func (k *KEKs) Primary() string { return k.primary }

// IDs returns the IDs of every key, the primary first.
func (k *KEKs) IDs() []string {
	ids := []string{k.primary}
	for id := range k.byID {
		if id != k.primary {
			ids = append(ids, id)
		}
	}
	return ids
}

// wrapAAD binds a wrapped key to its subject: a wrapped key copied to
// another subject's row does not unwrap.
func wrapAAD(subject string) []byte { return []byte("eventbus:subject-key:v1\x00" + subject) }

// wrap encrypts a subject's key under the primary KEK.
func (k *KEKs) wrap(subject string, dek []byte) (store.SubjectKey, error) {
	aead := k.byID[k.primary]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(dek)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return store.SubjectKey{}, fmt.Errorf("erasure: wrap a key: %w", err)
	}
	return store.SubjectKey{Subject: subject, KEK: k.primary, Wrapped: aead.Seal(nonce, nonce, dek, wrapAAD(subject))}, nil
}

// unwrap decrypts a subject's key.
func (k *KEKs) unwrap(sk store.SubjectKey) ([]byte, error) {
	aead, ok := k.byID[sk.KEK]
	if !ok {
		return nil, fmt.Errorf("erasure: the key of a data subject is wrapped under %s, which is not configured (configured: %s): %w",
			sk.KEK, strings.Join(k.IDs(), ", "), ErrNoKEK)
	}
	n := aead.NonceSize()
	if len(sk.Wrapped) < n+aead.Overhead() {
		return nil, fmt.Errorf("erasure: the wrapped key of a data subject is %d bytes, too short", len(sk.Wrapped))
	}
	dek, err := aead.Open(nil, sk.Wrapped[:n], sk.Wrapped[n:], wrapAAD(sk.Subject))
	if err != nil {
		return nil, fmt.Errorf("erasure: unwrap the key of a data subject under %s: %w", sk.KEK, err)
	}
	return dek, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	return aead, nil
}
