package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Payload is implemented by the Go type of each domain event.
type Payload interface {
	// EventType returns the event's type name, for example "quiz.submitted".
	// A type name is never renamed or given another meaning.
	EventType() string
}

// Validator is implemented by payloads that check their own content beyond
// what decoding checks.
type Validator interface {
	Validate() error
}

// Sentinel errors. Every error the registry returns wraps one of them.
var (
	// ErrInvalid reports an event that does not fit its type, or a draft
	// that misses what every event needs.
	ErrInvalid = errors.New("invalid event")
	// ErrUnknownType reports an event type the registry does not know.
	ErrUnknownType = errors.New("unknown event type")
	// ErrTooLarge reports event data over the configured limit.
	ErrTooLarge = errors.New("event data too large")
)

// ValidationError says which field of an event is wrong and why.
type ValidationError struct {
	Type   string // the event type
	Field  string // the JSON name of the field; "" for the event as a whole
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid event %s: %s", e.Type, e.Reason)
	}
	return fmt.Sprintf("invalid event %s: field %q %s", e.Type, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Invalid returns a *ValidationError for field. Payload Validate methods use
// it to report what is wrong.
func Invalid(typ, field, reason string) error {
	return &ValidationError{Type: typ, Field: field, Reason: reason}
}

// Registry maps event type names to the Go types that describe them. It is
// safe for concurrent use. The zero value is not usable: call NewRegistry.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*registeredType
	byGo   map[reflect.Type]*registeredType
	// personal holds the personal-data declarations SetPersonal made
	// (personal.go); nil until the first.
	personal map[string]PersonalSpec
}

type registeredType struct {
	name   string
	goType reflect.Type
	fields []payloadField
}

// payloadField is one top-level JSON field of a payload struct.
type payloadField struct {
	name     string
	index    []int
	required bool // a field without omitempty must be present and not null
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: map[string]*registeredType{}, byGo: map[reflect.Type]*registeredType{}}
}

// Register adds payload type T to r under the name T.EventType() returns.
// T must be a struct type. Registering the same type twice is a no-op;
// registering a second Go type under a taken name is an error.
func Register[T Payload](r *Registry) error {
	var zero T
	goType := reflect.TypeOf(zero)
	if goType == nil || goType.Kind() != reflect.Struct {
		return fmt.Errorf("event: register %T: a payload must be a struct type", zero)
	}
	name := zero.EventType()
	if err := CheckTypeName(name); err != nil {
		return fmt.Errorf("event: register %T: %w", zero, err)
	}
	rt := &registeredType{name: name, goType: goType, fields: payloadFields(goType)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byName[name]; ok {
		if prev.goType == goType {
			return nil
		}
		return fmt.Errorf("event: register %T: type %q is already registered to %v", zero, name, prev.goType)
	}
	r.byName[name] = rt
	r.byGo[goType] = rt
	return nil
}

// MustRegister is Register for package initialisation, where a clash is a
// programming error.
func MustRegister[T Payload](r *Registry) {
	if err := Register[T](r); err != nil {
		panic(err)
	}
}

// Known reports whether typ is registered.
func (r *Registry) Known(typ string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.byName[typ]
	return ok
}

// Types returns the registered type names, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Decode decodes data into a new value of the Go type registered for typ,
// then validates it. It returns the value (not a pointer). Errors wrap
// ErrUnknownType or ErrInvalid and name the field at fault.
func (r *Registry) Decode(typ string, data []byte) (any, error) {
	r.mu.RLock()
	rt, ok := r.byName[typ]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	v, err := rt.decode(data)
	if err != nil {
		return nil, err
	}
	return v.Interface(), nil
}

// Check reports whether data is a valid event of type typ. It is Decode
// without the result.
func (r *Registry) Check(typ string, data []byte) error {
	_, err := r.Decode(typ, data)
	return err
}

// DecodeAs decodes data as payload type T, checking it as Decode does, without
// needing a registry: T describes itself.
func DecodeAs[T Payload](data []byte) (T, error) {
	var zero T
	goType := reflect.TypeOf(zero)
	if goType == nil || goType.Kind() != reflect.Struct {
		return zero, fmt.Errorf("event: decode %T: a payload must be a struct type", zero)
	}
	rt := registeredType{name: zero.EventType(), goType: goType, fields: cachedFields(goType)}
	v, err := rt.decode(data)
	if err != nil {
		return zero, err
	}
	return v.Interface().(T), nil
}

// Validate checks a payload value: its required fields are set, and its own
// Validate method, if any, passes.
func Validate(p Payload) error {
	if v, ok := p.(Validator); ok {
		if err := v.Validate(); err != nil {
			if !errors.Is(err, ErrInvalid) {
				err = &ValidationError{Type: p.EventType(), Reason: err.Error()}
			}
			return err
		}
	}
	return nil
}

var fieldCache sync.Map // reflect.Type -> []payloadField

func cachedFields(t reflect.Type) []payloadField {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]payloadField)
	}
	f := payloadFields(t)
	fieldCache.Store(t, f)
	return f
}

// decode checks that data is a JSON object, that every required field is
// present, and decodes the fields one at a time so that an error names its
// field. Fields the type does not declare are accepted and ignored: a newer
// producer may add optional fields to a type (forward compatibility).
func (rt *registeredType) decode(data []byte) (reflect.Value, error) {
	if !utf8.Valid(data) {
		return reflect.Value{}, &ValidationError{Type: rt.name, Reason: "data is not valid UTF-8"}
	}
	var obj map[string]json.RawMessage
	err := json.Unmarshal(data, &obj)
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		// Say so: "must be a JSON object" would puzzle the sender of an
		// object that nests too deep for the decoder.
		return reflect.Value{}, &ValidationError{Type: rt.name, Reason: "data is not valid JSON: " + syntax.Error()}
	}
	if err != nil || obj == nil {
		return reflect.Value{}, &ValidationError{Type: rt.name, Reason: "data must be a JSON object"}
	}
	v := reflect.New(rt.goType).Elem()
	for _, f := range rt.fields {
		raw, ok := obj[f.name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			if f.required {
				return reflect.Value{}, &ValidationError{Type: rt.name, Field: f.name, Reason: "is required"}
			}
			continue
		}
		fv := v.FieldByIndex(f.index)
		if err := json.Unmarshal(raw, fv.Addr().Interface()); err != nil {
			return reflect.Value{}, &ValidationError{Type: rt.name, Field: f.name, Reason: describeKind(fv.Type())}
		}
	}
	if p, ok := v.Interface().(Payload); ok {
		if err := Validate(p); err != nil {
			return reflect.Value{}, err
		}
	}
	return v, nil
}

var uuidType = reflect.TypeOf(uuid.UUID{})

// describeKind says what a field must be, for an error message.
func describeKind(t reflect.Type) string {
	if t == uuidType {
		return "must be a UUID"
	}
	switch t.Kind() {
	case reflect.String:
		return "must be a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "must be an integer in range"
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	case reflect.Bool:
		return "must be a boolean"
	case reflect.Slice, reflect.Array:
		return "must be an array"
	case reflect.Map, reflect.Struct:
		return "must be an object"
	}
	return "has the wrong type"
}

// payloadFields lists the top-level JSON fields of struct type t.
func payloadFields(t reflect.Type) []payloadField {
	var fields []payloadField
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		}
		fields = append(fields, payloadField{
			name:     name,
			index:    sf.Index,
			required: !strings.Contains(","+opts+",", ",omitempty,") && sf.Type.Kind() != reflect.Pointer,
		})
	}
	return fields
}
