package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Types declared outside Go (DESIGN "Types declared outside Go"): a
// directory holds one JSON Schema (draft 2020-12) per type version, in a
// file named {type}.v{N}.json. The schemas are compiled once, when the
// directory is read; a declared type has no Go type and no upcasters, so
// its events are delivered in the version they were written in.

// Keywords of a declared type's schema that name its personal data.
const (
	// KeywordDataSubject names the property that holds the data subject's
	// id (a property name).
	KeywordDataSubject = "x-eventbus-data-subject"
	// KeywordPersonal lists the properties that hold personal data.
	KeywordPersonal = "x-eventbus-personal"
)

// MaxSchemaFileBytes bounds a schema file.
const MaxSchemaFileBytes = 1 << 20

// ErrBadSchemaFile is wrapped by every SchemaFileError.
var ErrBadSchemaFile = errors.New("bad schema file")

// SchemaFileError says what is wrong with one file of a schema directory.
type SchemaFileError struct {
	File   string // the file's path
	Reason string
}

func (e *SchemaFileError) Error() string { return e.File + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrBadSchemaFile) hold.
func (e *SchemaFileError) Unwrap() error { return ErrBadSchemaFile }

// SchemaDirError lists every bad file of a schema directory.
type SchemaDirError struct {
	Dir   string
	Files []*SchemaFileError
}

func (e *SchemaDirError) Error() string {
	parts := make([]string, len(e.Files))
	for i, f := range e.Files {
		parts[i] = f.Error()
	}
	n := "1 bad file"
	if len(e.Files) != 1 {
		n = strconv.Itoa(len(e.Files)) + " bad files"
	}
	return fmt.Sprintf("schema directory %s: %s: %s", e.Dir, n, strings.Join(parts, "; "))
}

// Unwrap returns the files' errors.
func (e *SchemaDirError) Unwrap() []error {
	out := make([]error, len(e.Files))
	for i, f := range e.Files {
		out[i] = f
	}
	return out
}

// DeclaredType is an event type declared by the schema files of a
// directory.
type DeclaredType struct {
	Type string
	// Versions are 1 to N, in order.
	Versions []DeclaredVersion
	// Personal is what the schemas name with x-eventbus-data-subject and
	// x-eventbus-personal (the personal fields of every version); nil when
	// none names a data subject.
	Personal *PersonalSpec
}

// DeclaredVersion is one version of a declared type: one file.
type DeclaredVersion struct {
	Version int
	File    string
	Schema  json.RawMessage
	schema  *compiledSchema
}

var schemaFileName = regexp.MustCompile(`^(.+)\.v([1-9][0-9]{0,8})\.json$`)

// ReadSchemaDir reads and checks every file of dir: its name
// ({type}.v{N}.json), that it is a JSON Schema of draft 2020-12 that
// compiles on its own, its x-eventbus keywords, that the versions of each
// type have no gap, and that no type is one registered in Go in goTypes
// (which may be nil). Each schema is compiled once, here. It returns the
// declared types, sorted by name, or a *SchemaDirError that names every
// bad file and what is wrong with it. Files whose names start with a dot
// are left alone.
func ReadSchemaDir(dir string, goTypes *Registry) ([]DeclaredType, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("schema directory %s: %w", dir, err)
	}
	var bad []*SchemaFileError
	fail := func(file, format string, args ...any) {
		bad = append(bad, &SchemaFileError{File: file, Reason: fmt.Sprintf(format, args...)})
	}
	byType := map[string][]DeclaredVersion{}
	personal := map[string][]*PersonalSpec{} // by type, per version (nil: none)
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		if e.IsDir() {
			fail(path, "is a directory; the schema directory holds only files named {type}.v{N}.json")
			continue
		}
		m := schemaFileName.FindStringSubmatch(name)
		if m == nil {
			fail(path, "is not named {type}.v{N}.json (for example course.completed.v1.json)")
			continue
		}
		typ := m[1]
		v, _ := strconv.Atoi(m[2])
		if err := CheckTypeName(typ); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fail(path, "names the type %s, which %s", Quote(typ), fe.Reason)
			} else {
				fail(path, "names the type %s: %v", Quote(typ), err)
			}
			continue
		}
		if goTypes != nil {
			if rt := goTypes.lookup(typ); rt != nil && rt.origin == OriginGo {
				fail(path, "declares %s, a type registered in Go in this build; a declared type needs a name of its own", typ)
				continue
			}
		}
		raw, err := readSchemaFile(path)
		if err != nil {
			fail(path, "%v", err)
			continue
		}
		cs, err := compileSchema(name, raw)
		if err != nil {
			fail(path, "%s", strings.TrimPrefix(err.Error(), name+" "))
			continue
		}
		spec, err := personalKeywords(raw)
		if err != nil {
			fail(path, "%v", err)
			continue
		}
		byType[typ] = append(byType[typ], DeclaredVersion{Version: v, File: path, Schema: cs.raw, schema: cs})
		personal[typ] = append(personal[typ], spec)
	}
	var out []DeclaredType
	for _, typ := range sortedKeys(byType) {
		versions := byType[typ]
		specs := personal[typ]
		idx := make([]int, len(versions))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return versions[idx[a]].Version < versions[idx[b]].Version })
		dt := DeclaredType{Type: typ}
		ok := true
		for want, i := range idx {
			v := versions[i]
			if v.Version != want+1 {
				fail(v.File, "is version %d of %s, but there is no version %d: versions start at 1 and skip none", v.Version, typ, want+1)
				ok = false
				break
			}
			dt.Versions = append(dt.Versions, v)
			spec := specs[i]
			switch {
			case spec == nil:
			case dt.Personal == nil:
				dt.Personal = &PersonalSpec{DataSubject: spec.DataSubject, Fields: slices.Clone(spec.Fields)}
			case dt.Personal.DataSubject != spec.DataSubject:
				fail(v.File, "names %s as %s, but an earlier version of %s names %s: a type keeps its data subject",
					Quote(spec.DataSubject), KeywordDataSubject, typ, Quote(dt.Personal.DataSubject))
				ok = false
			default:
				for _, f := range spec.Fields {
					if !slices.Contains(dt.Personal.Fields, f) {
						dt.Personal.Fields = append(dt.Personal.Fields, f)
					}
				}
			}
		}
		if ok {
			out = append(out, dt)
		}
	}
	if len(bad) > 0 {
		sort.SliceStable(bad, func(i, j int) bool { return bad[i].File < bad[j].File })
		return nil, &SchemaDirError{Dir: dir, Files: bad}
	}
	return out, nil
}

func readSchemaFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %w", errors.Unwrap(err))
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxSchemaFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %w", err)
	}
	if len(raw) > MaxSchemaFileBytes {
		return nil, fmt.Errorf("is over %d bytes; a type's schema is smaller", MaxSchemaFileBytes)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("is empty; it must hold a JSON Schema (draft 2020-12)")
	}
	return raw, nil
}

// PersonalOfSchema reads the personal data a schema names with
// x-eventbus-data-subject and x-eventbus-personal, checked as a declared
// type's are; nil when it names no data subject. A Go type's schemas carry
// the same keywords, so that GET /v1/schemas tells every reader (the
// console among them) which fields are personal.
func PersonalOfSchema(schema []byte) (*PersonalSpec, error) { return personalKeywords(schema) }

// personalKeywords reads x-eventbus-data-subject and x-eventbus-personal:
// the data subject is a property the schema requires, the personal
// fields are properties it declares. nil when the schema names no data
// subject.
func personalKeywords(raw []byte) (*PersonalSpec, error) {
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
		Subject    json.RawMessage            `json:"x-eventbus-data-subject"`
		Personal   json.RawMessage            `json:"x-eventbus-personal"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("cannot read its top-level keywords: %v", err)
	}
	if doc.Subject == nil {
		if doc.Personal != nil {
			return nil, fmt.Errorf("has %s without %s: personal data is encrypted under its data subject's key, so name the property that holds the subject's id", KeywordPersonal, KeywordDataSubject)
		}
		return nil, nil
	}
	var spec PersonalSpec
	if err := json.Unmarshal(doc.Subject, &spec.DataSubject); err != nil || spec.DataSubject == "" {
		return nil, fmt.Errorf("%s must be the name of a property (a non-empty string)", KeywordDataSubject)
	}
	if _, ok := doc.Properties[spec.DataSubject]; !ok {
		return nil, fmt.Errorf("%s names %s, which is not in the schema's properties", KeywordDataSubject, Quote(spec.DataSubject))
	}
	if !slices.Contains(doc.Required, spec.DataSubject) {
		return nil, fmt.Errorf("%s names %s, which the schema does not require: every event must say whose data it holds", KeywordDataSubject, Quote(spec.DataSubject))
	}
	if doc.Personal != nil {
		if err := json.Unmarshal(doc.Personal, &spec.Fields); err != nil {
			return nil, fmt.Errorf("%s must be a list of property names", KeywordPersonal)
		}
	}
	for i, f := range spec.Fields {
		switch {
		case f == spec.DataSubject:
			return nil, fmt.Errorf("%s lists %s, the data subject: the subject's id stays readable, so that it can be erased", KeywordPersonal, Quote(f))
		case slices.Contains(spec.Fields[:i], f):
			return nil, fmt.Errorf("%s lists %s twice", KeywordPersonal, Quote(f))
		}
		if _, ok := doc.Properties[f]; !ok {
			return nil, fmt.Errorf("%s lists %s, which is not in the schema's properties", KeywordPersonal, Quote(f))
		}
	}
	return &spec, nil
}

// Declare adds types declared by schema files (ReadSchemaDir) to r, and
// their personal fields (SetPersonal). Declaring a type again with the same
// schemas is a no-op; a type r registers in Go, or declares with other
// schemas, is an error: a declaration cannot replace either.
func (r *Registry) Declare(types []DeclaredType) error {
	if err := r.declare(types); err != nil {
		return err
	}
	// Through SetPersonal, as for a Go type: erasure reads the
	// declarations from one place.
	for _, dt := range types {
		if dt.Personal != nil {
			if err := r.SetPersonal(dt.Type, PersonalSpec{DataSubject: dt.Personal.DataSubject, Fields: slices.Clone(dt.Personal.Fields)}); err != nil {
				return fmt.Errorf("event: declare %s: %w", dt.Type, err)
			}
		}
	}
	return nil
}

// declare adds the types themselves, all or none.
func (r *Registry) declare(types []DeclaredType) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, dt := range types {
		if prev, ok := r.byName[dt.Type]; ok {
			if prev.origin == OriginGo {
				return fmt.Errorf("event: declare %s: the type is registered in Go (%v)", dt.Type, prev.goType)
			}
			if !sameDeclaration(prev, dt) {
				return fmt.Errorf("event: declare %s: the type is already declared, with other schemas", dt.Type)
			}
		}
		if len(dt.Versions) == 0 {
			return fmt.Errorf("event: declare %s: no versions", dt.Type)
		}
		for i, v := range dt.Versions {
			if v.Version != i+1 || v.schema == nil {
				return fmt.Errorf("event: declare %s: version %d is not the one ReadSchemaDir read", dt.Type, i+1)
			}
		}
	}
	for _, dt := range types {
		if _, ok := r.byName[dt.Type]; ok {
			continue // declared before, the same: declaring again is a no-op
		}
		rt := &registeredType{name: dt.Type, origin: OriginFile}
		for _, v := range dt.Versions {
			rt.versions = append(rt.versions, typeVersion{schema: v.schema})
		}
		rt.latestURN = SchemaURN(dt.Type, rt.latest())
		r.byName[dt.Type] = rt
	}
	return nil
}

// LoadSchemaDir reads dir (ReadSchemaDir, against the Go types of r) and
// declares its types in r. It returns what it declared.
func LoadSchemaDir(r *Registry, dir string) ([]DeclaredType, error) {
	types, err := ReadSchemaDir(dir, r)
	if err != nil {
		return nil, err
	}
	if err := r.Declare(types); err != nil {
		return nil, err
	}
	return types, nil
}

// sameDeclaration reports whether rt, a declared type, has exactly the
// versions of dt.
func sameDeclaration(rt *registeredType, dt DeclaredType) bool {
	if len(rt.versions) != len(dt.Versions) {
		return false
	}
	for i, v := range dt.Versions {
		if !bytes.Equal(rt.versions[i].schema.raw, v.Schema) {
			return false
		}
	}
	return true
}
