package event

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Type versions (DESIGN "Type versions"). A type may have several versions,
// each described by a JSON Schema. An event names the version of its data
// with its dataschema, urn:edupulse:schema:{type}:{version}; the store keeps
// the data as written, in the version it was written in, and readers get
// the latest version through the upcasters of a type registered in Go,
// unless they ask for the stored one (WithStoredVersions). An event stored
// without a dataschema (before versions existed) is of version 1.

// TypeInfo describes one type: where it comes from and its versions.
type TypeInfo struct {
	Type     string          `json:"type"`
	Origin   string          `json:"origin"`
	Versions []SchemaVersion `json:"versions"`
}

// SchemaVersion is one version of a type with its JSON Schema.
type SchemaVersion struct {
	Version int             `json:"version"`
	Schema  json.RawMessage `json:"schema"`
}

// Describe returns every type the registry knows, sorted by name, with
// its versions and their schemas.
func (r *Registry) Describe() []TypeInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]TypeInfo, 0, len(r.byName))
	for _, name := range sortedKeys(r.byName) {
		rt := r.byName[name]
		info := TypeInfo{Type: name, Origin: rt.origin, Versions: make([]SchemaVersion, len(rt.versions))}
		for i, v := range rt.versions {
			info.Versions[i] = SchemaVersion{Version: i + 1, Schema: v.schema.raw}
		}
		out = append(out, info)
	}
	return out
}

// Origin returns where typ comes from: OriginGo or OriginFile; "" for a
// type the registry does not know.
func (r *Registry) Origin(typ string) string {
	if rt := r.lookup(typ); rt != nil {
		return rt.origin
	}
	return ""
}

// Latest returns the latest version of typ, and false for a type the
// registry does not know.
func (r *Registry) Latest(typ string) (int, bool) {
	rt := r.lookup(typ)
	if rt == nil {
		return 0, false
	}
	return rt.latest(), true
}

// LatestSchema returns the dataschema of the latest version of typ, and
// false for a type the registry does not know.
func (r *Registry) LatestSchema(typ string) (string, bool) {
	rt := r.lookup(typ)
	if rt == nil {
		return "", false
	}
	return rt.latestURN, true
}

// CheckAs checks data as the version of typ that dataschema names (the
// latest when it is ""), and returns the dataschema to store with it: the
// URN of that version. Data of an older version of a Go type must also
// upcast to valid data of the latest. Errors wrap ErrUnknownType, or
// ErrInvalid: a *FieldError for field "dataschema", or a *ValidationError
// that names the data's fields.
func (r *Registry) CheckAs(typ, dataschema string, data []byte) (string, error) {
	rt := r.lookup(typ)
	if rt == nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	v, err := rt.resolve(dataschema)
	if err != nil {
		return "", err
	}
	if err := rt.checkVersion(v, data); err != nil {
		return "", err
	}
	return SchemaURN(typ, v), nil
}

// resolve returns the version that dataschema names.
func (rt *registeredType) resolve(dataschema string) (int, error) {
	if dataschema == "" {
		return rt.latest(), nil
	}
	typ, v, ok := ParseSchemaURN(dataschema)
	switch {
	case !ok:
		return 0, fieldError("dataschema", ErrOutOfRange, "%s does not name a version of %s; send %s (version 1 to %d), or leave it out for the latest",
			Quote(dataschema), rt.name, Quote(SchemaURN(rt.name, rt.latest())), rt.latest())
	case typ != rt.name:
		return 0, fieldError("dataschema", ErrOutOfRange, "%s names a version of type %s, not of %s", Quote(dataschema), Quote(typ), rt.name)
	case v > rt.latest():
		return 0, fieldError("dataschema", ErrOutOfRange, "%s names version %d of %s, which has versions 1 to %d",
			Quote(dataschema), v, rt.name, rt.latest())
	}
	return v, nil
}

// checkVersion checks data as version v of the type. The latest version
// of a Go type is checked by decoding it into the Go type (its own rules
// and messages); every other version by its schema.
func (rt *registeredType) checkVersion(v int, data []byte) error {
	if rt.goType != nil && v == rt.latest() {
		_, err := rt.decode(data)
		return err
	}
	if err := rt.checkSchema(v, data); err != nil {
		return err
	}
	if rt.goType == nil {
		return nil
	}
	up, err := rt.upcastData(v, data)
	if err != nil {
		return &ValidationError{Type: rt.name, Version: v, Reason: err.Error()}
	}
	if _, err := rt.decode(up); err != nil {
		return &ValidationError{Type: rt.name, Version: v,
			Reason: fmt.Sprintf("data of version %d upcasts to data that version %d refuses: %v", v, rt.latest(), err)}
	}
	return nil
}

// checkSchema validates data against the schema of version v.
func (rt *registeredType) checkSchema(v int, data []byte) error {
	vs, more, err := rt.versions[v-1].schema.validate(data)
	if err != nil {
		return &ValidationError{Type: rt.name, Version: v, Reason: "data is not valid JSON: " + err.Error()}
	}
	if len(vs) == 0 {
		return nil
	}
	return &ValidationError{Type: rt.name, Version: v, Field: pointerField(vs[0].Path), Reason: vs[0].Message,
		Violations: vs, More: more}
}

// pointerField turns a JSON Pointer into the field notation of the input
// limits: /answers/2/text is answers[2].text.
func pointerField(ptr string) string {
	if ptr == "" {
		return ""
	}
	var sb strings.Builder
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		if _, err := strconv.Atoi(tok); err == nil && sb.Len() > 0 {
			sb.WriteString("[" + tok + "]")
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(tok)
	}
	return sb.String()
}

// upcastData turns data of version from into data of the latest version.
func (rt *registeredType) upcastData(from int, data json.RawMessage) (json.RawMessage, error) {
	for v := from + 1; v <= rt.latest(); v++ {
		up := rt.versions[v-1].upcast
		if up == nil {
			return nil, fmt.Errorf("%s has no upcaster from version %d to %d", rt.name, v-1, v)
		}
		next, err := up(data)
		if err != nil {
			return nil, fmt.Errorf("upcast %s from version %d to %d: %w", rt.name, v-1, v, err)
		}
		data = next
	}
	return data, nil
}

// UpcastData returns data of version from of typ as data of its latest
// version, and that version.
func (r *Registry) UpcastData(typ string, from int, data json.RawMessage) (json.RawMessage, int, error) {
	rt := r.lookup(typ)
	if rt == nil {
		return nil, 0, fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	if from < 1 || from > rt.latest() {
		return nil, 0, fmt.Errorf("%w: %s has no version %d", ErrInvalid, typ, from)
	}
	out, err := rt.upcastData(from, data)
	return out, rt.latest(), err
}

type storedVersionsKey struct{}

// WithStoredVersions returns a context in which reads through
// Registry.Upcast (the service's store) return events in the version they
// were stored in, not upcast to the latest.
func WithStoredVersions(ctx context.Context) context.Context {
	return context.WithValue(ctx, storedVersionsKey{}, true)
}

// StoredVersions reports whether ctx asks for events in their stored
// version (WithStoredVersions).
func StoredVersions(ctx context.Context) bool {
	v, _ := ctx.Value(storedVersionsKey{}).(bool)
	return v
}

// Upcast is the read transform of type versions (a store.Transform): it
// names the version of every event of a known type in its DataSchema (an
// event stored without one is of version 1) and, unless ctx asks for
// stored versions, turns the data of an older version of a type
// registered in Go into its latest version. Events of types the registry
// does not know, and of types declared by schema files (which have no
// upcasters), keep their data and dataschema as stored.
//
// An upcaster that fails leaves its event in the stored version, which its
// DataSchema then names: one event that cannot be upcast must not stop the
// relay or a replay (G9), and its consumers can tell.
func (r *Registry) Upcast(ctx context.Context, events []Envelope) error {
	stored := StoredVersions(ctx)
	for i := range events {
		e := &events[i]
		rt := r.lookup(e.Type)
		if rt == nil {
			continue
		}
		v := 1
		if e.DataSchema != "" {
			typ, n, ok := ParseSchemaURN(e.DataSchema)
			if !ok || typ != e.Type || n > rt.latest() {
				continue // not a version this build knows: leave it as stored
			}
			v = n
		} else {
			e.DataSchema = SchemaURN(e.Type, 1)
		}
		if stored || v == rt.latest() || rt.goType == nil {
			continue
		}
		data, err := rt.upcastData(v, e.Data)
		if err != nil {
			continue
		}
		e.Data, e.DataSchema = data, SchemaURN(e.Type, rt.latest())
	}
	return nil
}

// AddField returns the JSON object data with the member "name": value
// added at its end, unless data already has a member of that name. The
// bytes of data are kept as they are: an upcaster that adds a field
// changes nothing else.
func AddField(data json.RawMessage, name string, value json.RawMessage) (json.RawMessage, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil || members == nil {
		return nil, fmt.Errorf("%w: data must be a JSON object", ErrInvalid)
	}
	if _, ok := members[name]; ok {
		return data, nil
	}
	if !json.Valid(value) {
		return nil, fmt.Errorf("%w: the value of %s is not JSON", ErrInvalid, name)
	}
	end := bytes.LastIndexByte(data, '}')
	body := bytes.TrimRight(data[:end], " \t\r\n")
	out := make([]byte, 0, len(data)+len(name)+len(value)+4)
	out = append(out, body...)
	if len(members) > 0 {
		out = append(out, ',')
	}
	out = appendString(out, name)
	out = append(out, ':')
	out = append(out, value...)
	out = append(out, data[len(body):]...)
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
