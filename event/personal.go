package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Personal data (DESIGN "Erasure by crypto-shredding", G10). A type names
// the field of its data that holds the data subject's id and the fields
// that are personal data of that subject. The bus stores those fields
// encrypted under a key of the subject's; erasing the subject destroys the
// key, and every reader then gets the fields as null, the event marked
// Erased.

// TypeDataSubjectErased is the type of the event that records an erasure.
// Its data is {"data_subject": "<id>", "erased_by": "<who asked>"}. Only
// the erasure itself records it: producers cannot.
const TypeDataSubjectErased = "datasubject.erased"

// Limits of personal-data declarations.
const (
	// MaxDataSubjectBytes is the longest data subject id.
	MaxDataSubjectBytes = 255
	// MaxPersonalFields is the most personal fields one event may name.
	MaxPersonalFields = 64
)

// ErrPersonal is the rule a *PersonalError breaks: a personal-data
// declaration that does not fit the event's data.
var ErrPersonal = errors.New("bad personal data declaration")

// PersonalSpec declares the personal data of an event type: DataSubject
// is the name of the top-level data field that holds the subject's id (a
// JSON string), Fields the names of the top-level fields that are that
// subject's personal data. Fields may be empty: the type names its subject
// and holds nothing to erase.
type PersonalSpec struct {
	DataSubject string
	Fields      []string
}

// PersonalDeclarer is implemented by payload types that declare their
// personal data. A registry that holds such a type reports the
// declaration from Personal, unless SetPersonal set another.
type PersonalDeclarer interface {
	PersonalData() PersonalSpec
}

// PersonalData is the personal data of one event as its producer declares
// it (the "personal" field of POST /v1/events), for types without a
// declaration: whose it is (the subject's id itself, not a field name)
// and which top-level fields of the data hold it.
type PersonalData struct {
	DataSubject string
	Fields      []string
}

// PersonalError says what is wrong with the personal data of an event. It
// wraps ErrInvalid and ErrPersonal. The HTTP API answers it with a 422
// naming Field.
type PersonalError struct {
	// Index is the event's place in its batch.
	Index int
	// Field names the field at fault as the POST /v1/events body does:
	// "personal.data_subject", "personal.fields[1]", "data.learner_id".
	Field  string
	Reason string
}

func (e *PersonalError) Error() string {
	return fmt.Sprintf("event %d: invalid personal data: %s %s", e.Index, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) and errors.Is(err, ErrPersonal)
// hold.
func (e *PersonalError) Unwrap() []error { return []error{ErrInvalid, ErrPersonal} }

// check reports what is wrong with spec as a type's declaration.
func (spec PersonalSpec) check() error {
	if spec.DataSubject == "" {
		return errors.New("DataSubject names no field")
	}
	seen := map[string]bool{spec.DataSubject: true}
	for _, f := range spec.Fields {
		if f == "" {
			return errors.New("a personal field has an empty name")
		}
		if seen[f] {
			return fmt.Errorf("field %q is named twice, or is the data subject (which stays readable: it finds the key)", f)
		}
		seen[f] = true
	}
	if len(spec.Fields) > MaxPersonalFields {
		return fmt.Errorf("%d personal fields; the limit is %d", len(spec.Fields), MaxPersonalFields)
	}
	return nil
}

// SetPersonal declares the personal data of type typ. The declaration
// replaces one the type's Go payload makes (PersonalDeclarer). It is an
// error for typ to be an invalid type name or spec to name no subject field
// or a field twice.
func (r *Registry) SetPersonal(typ string, spec PersonalSpec) error {
	if err := CheckTypeName(typ); err != nil {
		return fmt.Errorf("event: personal data of %q: %w", typ, err)
	}
	if err := spec.check(); err != nil {
		return fmt.Errorf("event: personal data of %s: %w", typ, err)
	}
	spec.Fields = slices.Clone(spec.Fields)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.personal == nil {
		r.personal = map[string]PersonalSpec{}
	}
	r.personal[typ] = spec
	return nil
}

// Personal returns the personal-data declaration of type typ: the one
// SetPersonal made, else the one its registered Go payload makes. ok is
// false when the type declares none.
func (r *Registry) Personal(typ string) (PersonalSpec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if spec, ok := r.personal[typ]; ok {
		return PersonalSpec{DataSubject: spec.DataSubject, Fields: slices.Clone(spec.Fields)}, true
	}
	if rt, ok := r.byName[typ]; ok && rt.goType != nil {
		if d, ok := reflectZero(rt).(PersonalDeclarer); ok {
			spec := d.PersonalData()
			return PersonalSpec{DataSubject: spec.DataSubject, Fields: slices.Clone(spec.Fields)}, spec.DataSubject != ""
		}
	}
	return PersonalSpec{}, false
}

// PersonalOf returns the personal data of a draft: what the draft itself
// declares (Draft.Personal), else what its type declares in r, with the
// subject's id read from its data. ok is false when the draft carries no
// personal data. index is the draft's place in its batch, for errors,
// which are *PersonalError.
func (r *Registry) PersonalOf(d *Draft, index int) (data PersonalData, ok bool, err error) {
	if d.Personal != nil {
		if _, declared := r.Personal(d.Type); declared {
			return PersonalData{}, false, &PersonalError{Index: index, Field: "personal",
				Reason: "is for types that declare no personal data; type " + d.Type + " declares its own: leave personal out"}
		}
		if err := CheckPersonalData(*d.Personal, d.Data, index); err != nil {
			return PersonalData{}, false, err
		}
		p := *d.Personal
		p.DataSubject = CanonicalSubject(p.DataSubject)
		return p, true, nil
	}
	spec, declared := r.Personal(d.Type)
	if !declared {
		return PersonalData{}, false, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(d.Data, &fields); err != nil || fields == nil {
		return PersonalData{}, false, &PersonalError{Index: index, Field: "data", Reason: "must be a JSON object: type " + d.Type + " has personal fields"}
	}
	raw, has := fields[spec.DataSubject]
	if !has || string(raw) == "null" {
		// Personal values without their subject could never be erased:
		// refuse them rather than store them in the clear.
		for _, f := range spec.Fields {
			if v, ok := fields[f]; ok && string(v) != "null" {
				return PersonalData{}, false, &PersonalError{Index: index, Field: "data." + spec.DataSubject,
					Reason: "is required: " + Quote(f) + " is personal data of the data subject it names (type " + d.Type + ")"}
			}
		}
		return PersonalData{}, false, nil
	}
	var subject string
	if err := json.Unmarshal(raw, &subject); err != nil {
		return PersonalData{}, false, &PersonalError{Index: index, Field: "data." + spec.DataSubject,
			Reason: "is the data subject of type " + d.Type + " and must be a string"}
	}
	if err := checkSubjectID(subject); err != nil {
		return PersonalData{}, false, &PersonalError{Index: index, Field: "data." + spec.DataSubject, Reason: err.Error()}
	}
	return PersonalData{DataSubject: CanonicalSubject(subject), Fields: spec.Fields}, true, nil
}

// CanonicalSubject is the form a data subject's id is keyed by: a UUID in
// any form uuid.Parse reads (upper case, braces, urn:uuid:) in its
// canonical lower-case form, so that one learner written two ways is one
// data subject; any other id as it is.
func CanonicalSubject(id string) string {
	if len(id) >= 32 && len(id) <= 45 {
		if u, err := uuid.Parse(id); err == nil {
			return u.String()
		}
	}
	return id
}

// CheckPersonalData checks a producer's per-event declaration against the
// event's data: the subject is a non-empty id of at most
// MaxDataSubjectBytes, and each field is a top-level field of data, named
// once. index is the event's place in its batch, for errors.
func CheckPersonalData(p PersonalData, data json.RawMessage, index int) error {
	if err := checkSubjectID(p.DataSubject); err != nil {
		return &PersonalError{Index: index, Field: "personal.data_subject", Reason: err.Error()}
	}
	if len(p.Fields) == 0 {
		return &PersonalError{Index: index, Field: "personal.fields", Reason: "is empty; name at least one top-level field of data"}
	}
	if len(p.Fields) > MaxPersonalFields {
		return &PersonalError{Index: index, Field: "personal.fields",
			Reason: fmt.Sprintf("names %d fields; the limit is %d", len(p.Fields), MaxPersonalFields)}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return &PersonalError{Index: index, Field: "data", Reason: "must be a JSON object when personal names fields of it"}
	}
	seen := make(map[string]bool, len(p.Fields))
	for i, f := range p.Fields {
		at := fmt.Sprintf("personal.fields[%d]", i)
		switch {
		case f == SealedKey:
			return &PersonalError{Index: index, Field: at, Reason: "names " + Quote(f) + ", which is reserved"}
		case seen[f]:
			return &PersonalError{Index: index, Field: at, Reason: "names " + Quote(f) + " a second time"}
		}
		if _, ok := fields[f]; !ok {
			return &PersonalError{Index: index, Field: at, Reason: "names " + Quote(f) + ", which is not a top-level field of data"}
		}
		seen[f] = true
	}
	return nil
}

func checkSubjectID(id string) error {
	switch {
	case id == "":
		return errors.New("is empty; give the data subject's id")
	case len(id) > MaxDataSubjectBytes:
		return fmt.Errorf("is %d bytes long; the limit is %d", len(id), MaxDataSubjectBytes)
	case !utf8.ValidString(id):
		return errors.New("is not valid UTF-8")
	}
	for _, c := range id {
		if c < 0x20 || c == 0x7f {
			return errors.New("holds a control character")
		}
	}
	return nil
}

// SealedKey is the top-level data field in which the store keeps the
// encrypted personal fields of an event (see package erasure). Incoming
// data may not hold it.
const SealedKey = "eventbus:sealed"

// reflectZero is the zero value of a registered Go type's payload (not
// of a declared type, which has none).
func reflectZero(rt *registeredType) any { return reflect.Zero(rt.goType).Interface() }

// DataSubjectErased is the data of a datasubject.erased event: who was
// erased, and who asked (the API token's name, or the user of the CLI).
// The event's time is when.
type DataSubjectErased struct {
	DataSubject string `json:"data_subject"`
	ErasedBy    string `json:"erased_by,omitempty"`
}

// EventType implements Payload.
func (DataSubjectErased) EventType() string { return TypeDataSubjectErased }
