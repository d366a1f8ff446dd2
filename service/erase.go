package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/erasure"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi"
	"github.com/edupulse/eventbus/httpapi/wire"
	"github.com/edupulse/eventbus/store"
)

// MasterKeyFile is the file in the data directory that holds the
// key-encryption key when the configuration gives none.
const MasterKeyFile = "master.key"

// ErrNoMasterKey reports that no key-encryption key is configured and a
// tool that must not create one found none.
var ErrNoMasterKey = errors.New("no master key")

// ErrWrongMasterKey reports that the store's subject keys are wrapped under
// a key-encryption key the process was not given: it could read no
// personal field, and the relay would stall on the first one.
var ErrWrongMasterKey = errors.New("wrong master key")

// openKeyring sets up erasure (G10): the key-encryption keys, the keyring
// on the store's subject keys, the read transform on Store, and the
// sealing of personal fields under the bus.
func (s *Service) openKeyring(ctx context.Context, opts Config) error {
	keys, ok := s.raw.(store.SubjectKeys)
	if !ok {
		return errors.New("service: the store keeps no subject keys")
	}
	text, err := s.masterKey(opts)
	if err != nil {
		return err
	}
	keks, err := erasure.ParseKEKs(text)
	if err != nil {
		return err
	}
	s.keyring, err = erasure.New(erasure.Config{Keys: keys, KEKs: keks, Registry: s.registry})
	if err != nil {
		return err
	}
	if err := s.checkMasterKey(ctx, keys, keks); err != nil {
		return err
	}
	s.Store = store.Transformed(s.raw, s.ReadTransform())
	s.driver = erasure.Sealing(s.driver, s.keyring)
	return nil
}

// checkMasterKey refuses a master key that does not unwrap the store's
// subject keys: processes of one store given different keys (each made
// its own master.key, say) would each read only their own. One stored key
// is enough to tell; during a rotation any of the process's keys will do.
// A read-only tool that runs without the key on purpose only warns.
func (s *Service) checkMasterKey(ctx context.Context, keys store.SubjectKeys, keks *erasure.KEKs) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	stored, err := keys.ListSubjectKeys(ctx, "", 1)
	if err != nil {
		return fmt.Errorf("service: check the master key against the stored subject keys: %w", err)
	}
	if len(stored) == 0 || slices.Contains(keks.IDs(), stored[0].KEK) {
		return nil
	}
	msg := fmt.Sprintf("the store's subject keys are wrapped under master key %s, and this process has %s: give every process of this store the same %s or %s",
		stored[0].KEK, strings.Join(keks.IDs(), ", "), config.EnvMasterKey, config.EnvMasterKeyFile)
	if s.ephemeralKEK {
		s.Logger.Warn("erasure: " + msg + "; personal fields will not be readable")
		return nil
	}
	return fmt.Errorf("service: %w: %s", ErrWrongMasterKey, msg)
}

// ReadTransform is the chain of transforms every event read through Store
// goes through: decryption (or erasure) of personal fields first, then
// upcasting to the latest version of the type, which works on the data as
// written (and is skipped for readers that ask for the stored version).
func (s *Service) ReadTransform() store.Transform {
	return store.Chain(s.keyring.Transform(), s.registry.Upcast)
}

// masterKey returns the text of the key-encryption keys: the
// configuration's, else the data directory's key file, created on first
// use with mode 0600.
func (s *Service) masterKey(opts Config) (string, error) {
	if s.Config.MasterKey != "" {
		return s.Config.MasterKey, nil
	}
	if s.Config.DataDir == "" {
		// Only a configuration built by hand, not loaded, has no data
		// directory: config.Load defaults it.
		text, err := erasure.NewKEKText()
		if err != nil {
			return "", err
		}
		s.ephemeralKEK = true
		s.Logger.Warn("erasure: no master key configured and no data directory to keep one in: using a key of this process only; " +
			"personal fields recorded now cannot be read by another process or after this one stops: set " + config.EnvMasterKey)
		return text, nil
	}
	path := filepath.Join(s.Config.DataDir, MasterKeyFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if fi, serr := os.Stat(path); serr == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("the master key file %s may be read by others than its owner (mode %#o): run chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		return string(data), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read the master key file %s: %w", path, err)
	case opts.MustExist:
		// A tool that must not create the store must not create its key
		// either: a new key reads nothing stored under the real one.
		text, err := erasure.NewKEKText()
		if err != nil {
			return "", err
		}
		s.ephemeralKEK = true
		s.Logger.Info("erasure: no master key configured and none at " + path + ": personal fields will not be readable; set " +
			config.EnvMasterKey + " or " + config.EnvMasterKeyFile)
		return text, nil
	}
	if err := os.MkdirAll(s.Config.DataDir, dataDirMode); err != nil {
		return "", fmt.Errorf("create the data directory %s for the master key: %w", s.Config.DataDir, err)
	}
	text, err := erasure.NewKEKText()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it meanwhile: use theirs.
		data, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read the master key file %s: %w", path, err)
		}
		return string(data), nil
	}
	if err != nil {
		return "", fmt.Errorf("create the master key file %s: %w", path, err)
	}
	if _, err := f.WriteString(text + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("write the master key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("write the master key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write the master key file %s: %w", path, err)
	}
	abs, _ := filepath.Abs(path)
	msg := "erasure: created a new master key (the key-encryption key of the data subjects' keys) in " + abs +
		" with mode 0600; back it up with the database: without it no personal field can be read"
	if !s.Config.Embedded() {
		msg += "; every process on this database needs the same key: set " + config.EnvMasterKey + " or " + config.EnvMasterKeyFile
	}
	s.Logger.Warn(msg, "path", abs)
	return text, nil
}

// EphemeralKEK reports that no master key was configured or found, so that
// the keyring uses a key of this process only: it reads no personal field
// stored before, and a rotation under it would make every one unreadable.
func (s *Service) EphemeralKEK() bool { return s.ephemeralKEK }

// Keyring returns the service's keyring: encryption of personal fields,
// erasure and KEK rotation.
func (s *Service) Keyring() *erasure.Keyring { return s.keyring }

// Erase erases data subject subject (G10): it destroys the subject's key
// and records a datasubject.erased event naming who asked (by), in one
// transaction. Erasing an unknown or erased subject succeeds.
func (s *Service) Erase(ctx context.Context, subject, by string) (store.Erasure, error) {
	if err := CheckDataSubject(subject); err != nil {
		return store.Erasure{}, err
	}
	subject = event.CanonicalSubject(subject)
	record, err := erasureRecord(ctx, subject, by)
	if err != nil {
		return store.Erasure{}, err
	}
	res, err := s.keyring.Erase(ctx, subject, record)
	if err != nil {
		return store.Erasure{}, err
	}
	s.wakeRelay()
	return res, nil
}

// erasureRecord is the datasubject.erased event of an erasure, complete.
// The type is not in the registry: producers cannot record it, only this.
func erasureRecord(ctx context.Context, subject, by string) (event.Draft, error) {
	data, err := json.Marshal(event.DataSubjectErased{DataSubject: subject, ErasedBy: by})
	if err != nil {
		return event.Draft{}, fmt.Errorf("service: erase: %w", err)
	}
	d := event.Draft{Type: event.TypeDataSubjectErased, Source: "eventbus", Data: data,
		OccurredAt: time.Now().Truncate(event.TimePrecision)}
	if d.ID, err = uuid.NewV7(); err != nil {
		return event.Draft{}, fmt.Errorf("service: erase: %w", err)
	}
	if corr, ok := event.CorrelationIDFrom(ctx); ok {
		d.CorrelationID = corr
	} else if d.CorrelationID, err = uuid.NewV7(); err != nil {
		return event.Draft{}, fmt.Errorf("service: erase: %w", err)
	}
	d.TraceParent, d.TraceState = event.TraceContextFrom(ctx)
	return d, nil
}

// CheckDataSubject checks a data subject's id given to erase: non-empty,
// at most event.MaxDataSubjectBytes, no control characters. The error is a
// *event.PersonalError for field "data_subject".
func CheckDataSubject(subject string) error {
	probe := event.PersonalData{DataSubject: subject, Fields: []string{"x"}}
	err := event.CheckPersonalData(probe, []byte(`{"x":0}`), 0)
	var pe *event.PersonalError
	if errors.As(err, &pe) {
		pe.Field = "data_subject"
		return pe
	}
	return err
}

// httpAdmin is HTTPAdmin with the erasure of the service's keyring.
func (s *Service) httpAdmin() httpapi.Admin {
	admin := HTTPAdmin(s.Store, s.Broker, s.relayName, s.Config.Exchange)
	admin.Erase = func(ctx context.Context, subject, by string) (wire.Erasure, error) {
		res, err := s.Erase(ctx, subject, by)
		if err != nil {
			return wire.Erasure{}, err
		}
		return WireErasure(res), nil
	}
	return admin
}

// WireErasure is an erasure in the HTTP API's terms.
func WireErasure(e store.Erasure) wire.Erasure {
	return wire.Erasure{DataSubject: e.Subject, ErasedAt: e.ErasedAt.UTC(), EventID: e.Recorded.Envelope.ID.String()}
}

// CLIUser names the user of the CLI for the audit of an erasure.
func CLIUser() string {
	for _, env := range []string{"USER", "LOGNAME", "USERNAME"} {
		if u := strings.TrimSpace(os.Getenv(env)); u != "" {
			return "cli:" + u
		}
	}
	return fmt.Sprintf("cli:uid-%d", os.Getuid())
}
