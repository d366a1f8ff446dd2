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
	// Version is the version of the type the data was checked against,
	// when it was checked against a schema; 0 otherwise.
	Version int
	// Violations are the ways in which the data breaks its schema, at most
	// MaxViolations of them; More counts those left out.
	Violations []Violation
	More       int
}

func (e *ValidationError) Error() string {
	if len(e.Violations) > 0 {
		parts := make([]string, len(e.Violations))
		for i, v := range e.Violations {
			parts[i] = v.String()
		}
		msg := fmt.Sprintf("invalid event %s (version %d): %s", e.Type, e.Version, strings.Join(parts, "; "))
		if e.More > 0 {
			msg += fmt.Sprintf(" (and %d more)", e.More)
		}
		return msg
	}
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

// Type origins: where a type's description comes from (GET /v1/schemas
// says it of every type).
const (
	// OriginGo is a type registered in Go (Register).
	OriginGo = "go"
	// OriginFile is a type declared by JSON Schema files (Declare,
	// LoadSchemaDir).
	OriginFile = "file"
)

// Registry maps event type names to what describes them: a Go type, or
// JSON Schemas declared outside Go, with every version of the type. It is
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
	origin string
	goType reflect.Type // nil for a declared type
	fields []payloadField
	// versions[i] is version i+1; the last is the latest, the one goType
	// describes.
	versions []typeVersion
	// latestURN is the dataschema of the latest version.
	latestURN string
}

type typeVersion struct {
	schema *compiledSchema
	// upcast turns data of the version before into data of this one; nil
	// for version 1 and for declared types.
	upcast Upcaster
}

func (rt *registeredType) latest() int { return len(rt.versions) }

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

// Upcaster turns the data of one version of a type into the data of the
// next version. It must accept every valid data of its version and return
// valid data of the next; it must not change what it does not have to.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// Version is one version of a type registered in Go.
type Version struct {
	// Number is the version: 1, 2, ... without gaps.
	Number int
	// Schema is the JSON Schema (draft 2020-12) of the version's data.
	Schema json.RawMessage
	// Upcast turns data of version Number-1 into data of this version. It
	// is nil for version 1, and required for every later one.
	Upcast Upcaster
}

// SchemaProvider is implemented by payload types that carry a hand-written
// JSON Schema of their data; Register generates one for the others.
type SchemaProvider interface {
	JSONSchema() json.RawMessage
}

// Register adds payload type T to r under the name T.EventType() returns.
// T must be a struct type. Registering the same type twice is a no-op;
// registering a second Go type under a taken name is an error.
//
// versions lists every version of the type, from 1 on, each with its
// schema and the upcaster from the version before; T describes the last
// one, the latest. Without versions the type has one version, whose
// schema is T's JSONSchema (SchemaProvider) or one generated from T.
func Register[T Payload](r *Registry, versions ...Version) error {
	var zero T
	goType := reflect.TypeOf(zero)
	if goType == nil || goType.Kind() != reflect.Struct {
		return fmt.Errorf("event: register %T: a payload must be a struct type", zero)
	}
	name := zero.EventType()
	if err := CheckTypeName(name); err != nil {
		return fmt.Errorf("event: register %T: %w", zero, err)
	}
	if len(versions) == 0 {
		schema := GenerateSchema(goType)
		if sp, ok := any(zero).(SchemaProvider); ok {
			schema = sp.JSONSchema()
		}
		versions = []Version{{Number: 1, Schema: schema}}
	}
	rt := &registeredType{name: name, origin: OriginGo, goType: goType, fields: payloadFields(goType)}
	for i, v := range versions {
		where := fmt.Sprintf("%s version %d", name, v.Number)
		switch {
		case v.Number != i+1:
			return fmt.Errorf("event: register %T: version %d is listed as number %d; versions are 1, 2, ... in order", zero, i+1, v.Number)
		case i == 0 && v.Upcast != nil:
			return fmt.Errorf("event: register %T: version 1 has no version before it to upcast from", zero)
		case i > 0 && v.Upcast == nil:
			return fmt.Errorf("event: register %T: version %d needs an upcaster from version %d", zero, v.Number, v.Number-1)
		}
		cs, err := compileSchema(where, v.Schema)
		if err != nil {
			return fmt.Errorf("event: register %T: %w", zero, err)
		}
		rt.versions = append(rt.versions, typeVersion{schema: cs, upcast: v.Upcast})
	}
	rt.latestURN = SchemaURN(name, rt.latest())
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.byName[name]; ok {
		if prev.goType == goType {
			return nil
		}
		if prev.goType == nil {
			return fmt.Errorf("event: register %T: type %q is already declared by a schema file", zero, name)
		}
		return fmt.Errorf("event: register %T: type %q is already registered to %v", zero, name, prev.goType)
	}
	r.byName[name] = rt
	r.byGo[goType] = rt
	return nil
}

// MustRegister is Register for package initialisation, where a clash is a
// programming error.
func MustRegister[T Payload](r *Registry, versions ...Version) {
	if err := Register[T](r, versions...); err != nil {
		panic(err)
	}
}

// Known reports whether typ is registered or declared.
func (r *Registry) Known(typ string) bool {
	return r.lookup(typ) != nil
}

func (r *Registry) lookup(typ string) *registeredType {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byName[typ]
}

// Types returns the registered and declared type names, sorted.
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
// then validates it. It returns the value (not a pointer); for a type
// declared by a schema, the data itself as a json.RawMessage once it fits
// the latest version's schema. Errors wrap
// ErrUnknownType or ErrInvalid and name the field at fault.
func (r *Registry) Decode(typ string, data []byte) (any, error) {
	r.mu.RLock()
	rt, ok := r.byName[typ]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	if rt.goType == nil {
		// A declared type has no Go type: its data is its JSON.
		if err := rt.checkVersion(rt.latest(), data); err != nil {
			return nil, err
		}
		return json.RawMessage(data), nil
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
func DecodeAs[T Payload](data []byte) (T, error) { return decodeAs[T](data, nil) }

// DecodeEnvelopeAs decodes env's data as payload type T, as DecodeAs does,
// except for an erased event (env.Erased): there the personal fields that T
// declares (PersonalDeclarer) read as null, and decode to their zero value
// instead of failing as missing, and T's own Validate is not run, since
// the erased values cannot pass it. A handler tells such a payload by
// env.Erased.
func DecodeEnvelopeAs[T Payload](env Envelope) (T, error) {
	if !env.Erased {
		return decodeAs[T](env.Data, nil)
	}
	var erased map[string]bool
	var zero T
	if d, ok := any(zero).(PersonalDeclarer); ok {
		spec := d.PersonalData()
		erased = make(map[string]bool, len(spec.Fields))
		for _, f := range spec.Fields {
			erased[f] = true
		}
	}
	return decodeAs[T](env.Data, erased)
}

// decodeAs decodes data as T, the fields named in erased allowed to be
// null (see decodeErased).
func decodeAs[T Payload](data []byte, erased map[string]bool) (T, error) {
	var zero T
	goType := reflect.TypeOf(zero)
	if goType == nil || goType.Kind() != reflect.Struct {
		return zero, fmt.Errorf("event: decode %T: a payload must be a struct type", zero)
	}
	rt := registeredType{name: zero.EventType(), goType: goType, fields: cachedFields(goType)}
	v, err := rt.decodeErased(data, erased)
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
	return rt.decodeErased(data, nil)
}

// decodeErased is decode for data whose fields named in erased may be null
// (erased personal data): a null there is the zero value, not missing, and
// when one is null the payload's Validate is skipped.
func (rt *registeredType) decodeErased(data []byte, erased map[string]bool) (reflect.Value, error) {
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
	skipValidate := false
	for _, f := range rt.fields {
		raw, ok := obj[f.name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			if erased[f.name] {
				skipValidate = true
				continue
			}
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
	if p, ok := v.Interface().(Payload); ok && !skipValidate {
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
