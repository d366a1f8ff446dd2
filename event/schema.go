package event

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// A type's versions are described by JSON Schemas (draft 2020-12), compiled
// once when the version is registered or declared, never per event.

// SchemaDraft is the JSON Schema dialect of every type version's schema.
const SchemaDraft = "https://json-schema.org/draft/2020-12/schema"

// schemaURNPrefix starts every dataschema the bus assigns (DESIGN "Type
// versions"): urn:edupulse:schema:{type}:{version}.
const schemaURNPrefix = "urn:edupulse:schema:"

// SchemaURN returns the dataschema of version v of type typ:
// urn:edupulse:schema:{type}:{version}.
func SchemaURN(typ string, v int) string {
	return schemaURNPrefix + typ + ":" + strconv.Itoa(v)
}

// ParseSchemaURN reads a dataschema that SchemaURN wrote. ok is false for
// any other text.
func ParseSchemaURN(s string) (typ string, v int, ok bool) {
	rest, found := strings.CutPrefix(s, schemaURNPrefix)
	i := strings.LastIndexByte(rest, ':')
	if !found || i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(rest[i+1:])
	if err != nil || n < 1 || strconv.Itoa(n) != rest[i+1:] {
		return "", 0, false
	}
	return rest[:i], n, true
}

// MaxViolations is how many schema violations an error reports: one bad
// event cannot make a huge answer.
const MaxViolations = 5

// Violation is one way in which data breaks its schema.
type Violation struct {
	// Path is the JSON Pointer (RFC 6901) of the value at fault in the
	// data: "" for the data as a whole, "/grade", "/answers/2/text".
	Path string `json:"path"`
	// Rule is the JSON Schema keyword broken: "required", "maximum", ...
	Rule string `json:"rule"`
	// Message says what is wrong, to be read after the path.
	Message string `json:"message"`
}

func (v Violation) String() string {
	path := v.Path
	if path == "" {
		path = "/"
	}
	return path + ": " + v.Message
}

// compiledSchema is a type version's schema, ready to validate data.
type compiledSchema struct {
	raw json.RawMessage
	sch *jsonschema.Schema
}

// CompileSchema checks that raw is a JSON Schema of draft 2020-12 that this
// bus can use on its own (no reference to a schema elsewhere: it would be
// fetched over the network) and compiles it. name says where the schema
// comes from, for errors.
func CompileSchema(name string, raw []byte) error {
	_, err := compileSchema(name, raw)
	return err
}

func compileSchema(name string, raw []byte) (*compiledSchema, error) {
	if err := CheckJSON(raw, MaxDataDepth); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %v", name, err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a JSON Schema: a schema of event data is a JSON object", name)
	}
	if d, ok := obj["$schema"]; ok && d != SchemaDraft && d != SchemaDraft+"#" {
		return nil, fmt.Errorf("%s: $schema is %v; the bus reads JSON Schema draft 2020-12 (%q)", name, d, SchemaDraft)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	// No loader for other URLs: a $ref outside the file is refused rather
	// than fetched at start-up.
	c.UseLoader(noLoader{})
	url := "mem:///" + strings.NewReplacer("/", "_", " ", "_").Replace(name)
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%s is not a valid JSON Schema: %v", name, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid JSON Schema (draft 2020-12): %s", name, schemaErrorText(err))
	}
	return &compiledSchema{raw: append(json.RawMessage(nil), raw...), sch: sch}, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the schema refers to %s; a type's schema must be self-contained (use $defs)", url)
}

// schemaErrorText shortens the compiler's error: the metaschema's verdict
// lists the faults, one per line.
func schemaErrorText(err error) string {
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var verr *jsonschema.ValidationError
		if errors.As(sve.Err, &verr) {
			vs, more := violations(verr)
			parts := make([]string, len(vs))
			for i, v := range vs {
				parts[i] = v.String()
			}
			s := strings.Join(parts, "; ")
			if more > 0 {
				s += fmt.Sprintf(" (and %d more)", more)
			}
			return s
		}
	}
	return err.Error()
}

// validate checks data against the schema. The error lists at most
// MaxViolations violations.
func (c *compiledSchema) validate(data []byte) ([]Violation, int, error) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, 0, err
	}
	// The validator compares numbers as exact rationals: 1e1000000 takes
	// it a tenth of a second, and data holds thousands of them. Numbers
	// beyond a 64-bit float, which few JSON readers take anyway, are
	// refused before it sees them.
	if vs := checkNumbers(inst, nil, nil); len(vs) > 0 {
		if len(vs) > MaxViolations {
			return vs[:MaxViolations:MaxViolations], len(vs) - MaxViolations, nil
		}
		return vs, 0, nil
	}
	err = c.sch.Validate(inst)
	if err == nil {
		return nil, 0, nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return nil, 0, err
	}
	vs, more := violations(verr)
	return vs, more, nil
}

var printer = message.NewPrinter(language.English)

// MaxNumberLen is the longest number, in characters, that data checked
// against a schema may hold.
const MaxNumberLen = 64

// checkNumbers reports the numbers of v that a schema does not check:
// longer than MaxNumberLen characters, or beyond the range of a 64-bit
// float.
func checkNumbers(v any, path []string, out []Violation) []Violation {
	switch v := v.(type) {
	case json.Number:
		if len(v) > MaxNumberLen {
			return append(out, Violation{Path: pointer(path), Rule: "number", Message: fmt.Sprintf("has more than %d characters", MaxNumberLen)})
		}
		// Underflow is no error to ParseFloat, and costs the validator as
		// much as overflow: bound the exponent too.
		exp := 0
		if i := strings.IndexAny(string(v), "eE"); i >= 0 {
			var err error
			if exp, err = strconv.Atoi(strings.TrimPrefix(string(v[i+1:]), "+")); err != nil {
				exp = 1 << 30
			}
		}
		if _, err := strconv.ParseFloat(string(v), 64); err != nil || exp > 400 || exp < -400 {
			return append(out, Violation{Path: pointer(path), Rule: "number", Message: "is beyond the range of a 64-bit float"})
		}
	case map[string]any:
		for _, k := range sortedKeys(v) {
			out = checkNumbers(v[k], append(path, k), out)
		}
	case []any:
		for i, e := range v {
			out = checkNumbers(e, append(path, strconv.Itoa(i)), out)
		}
	}
	return out
}

// violations flattens a validation error into its leaves, sorted by path
// (the validator's order depends on map iteration: the same data must get
// the same answer), at most MaxViolations of them, and how many more there
// are.
func violations(verr *jsonschema.ValidationError) ([]Violation, int) {
	var out []Violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		out = append(out, describeViolation(e)...)
	}
	walk(verr)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Rule < out[j].Rule
	})
	out = slices.Compact(out)
	if len(out) > MaxViolations {
		return out[:MaxViolations:MaxViolations], len(out) - MaxViolations
	}
	return out, 0
}

func pointer(loc []string) string {
	var sb strings.Builder
	for _, tok := range loc {
		sb.WriteByte('/')
		sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(tok))
	}
	return sb.String()
}

func ratString(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// describeViolation says what one leaf error means, in the words of the
// issue's example ("/grade: must be <= 100"), naming the keyword.
func describeViolation(e *jsonschema.ValidationError) []Violation {
	path := pointer(e.InstanceLocation)
	rule := ""
	if kp := e.ErrorKind.KeywordPath(); len(kp) > 0 {
		rule = kp[len(kp)-1]
	}
	one := func(msg string) []Violation { return []Violation{{Path: path, Rule: rule, Message: msg}} }
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		out := make([]Violation, len(k.Missing))
		for i, m := range k.Missing {
			out[i] = Violation{Path: path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(m), Rule: "required", Message: "is required"}
		}
		return out
	case *kind.AdditionalProperties:
		out := make([]Violation, len(k.Properties))
		for i, m := range k.Properties {
			out[i] = Violation{Path: path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(m), Rule: "additionalProperties", Message: "is not allowed by the schema"}
		}
		return out
	case *kind.Type:
		return one(fmt.Sprintf("must be %s, not %s", strings.Join(k.Want, " or "), k.Got))
	case *kind.Maximum:
		return one("must be <= " + ratString(k.Want))
	case *kind.Minimum:
		return one("must be >= " + ratString(k.Want))
	case *kind.ExclusiveMaximum:
		return one("must be < " + ratString(k.Want))
	case *kind.ExclusiveMinimum:
		return one("must be > " + ratString(k.Want))
	case *kind.MinLength:
		return one(fmt.Sprintf("must be at least %d characters long", k.Want))
	case *kind.MaxLength:
		return one(fmt.Sprintf("must be at most %d characters long", k.Want))
	case *kind.MinItems:
		return one(fmt.Sprintf("must have at least %d items", k.Want))
	case *kind.MaxItems:
		return one(fmt.Sprintf("must have at most %d items", k.Want))
	case *kind.Pattern:
		return one("must match the pattern " + Quote(k.Want))
	case *kind.Format:
		return one("must be a valid " + k.Want)
	case *kind.FalseSchema:
		return one("is not allowed by the schema")
	}
	return one(e.ErrorKind.LocalizedString(printer))
}

// GenerateSchema returns a JSON Schema (draft 2020-12) of the JSON that
// encoding/json makes of a value of Go struct type t: its fields by their
// JSON names, with their JSON types; the fields without omitempty that are
// not pointers are required. Types that describe themselves better
// implement SchemaProvider.
func GenerateSchema(t reflect.Type) json.RawMessage {
	s := typeSchema(t)
	s["$schema"] = SchemaDraft
	b, err := json.Marshal(s)
	if err != nil {
		return json.RawMessage(`{"$schema":"` + SchemaDraft + `","type":"object"}`)
	}
	return b
}

var (
	timeType          = reflect.TypeOf(time.Time{})
	marshalerType     = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

func typeSchema(t reflect.Type) map[string]any {
	switch {
	case t == uuidType:
		return map[string]any{"type": "string", "format": "uuid"}
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) ||
		t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType):
		// It encodes itself: nothing is known of its shape.
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := typeSchema(t.Elem())
		if typ, ok := s["type"].(string); ok {
			s["type"] = []string{typ, "null"}
		}
		return s
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		bits := t.Bits()
		return map[string]any{"type": "integer", "minimum": json.Number("-" + new(big.Int).Lsh(big.NewInt(1), uint(bits-1)).String()),
			"maximum": json.Number(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits-1)), big.NewInt(1)).String())}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		bits := t.Bits()
		return map[string]any{"type": "integer", "minimum": 0,
			"maximum": json.Number(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), uint(bits)), big.NewInt(1)).String())}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		return map[string]any{"type": "array", "items": typeSchema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem())}
	case reflect.Struct:
		if t.NumField() == 0 {
			return map[string]any{"type": "object"}
		}
		props := map[string]any{}
		var required []string
		for _, f := range payloadFields(t) {
			props[f.name] = typeSchema(t.FieldByIndex(f.index).Type)
			if f.required {
				required = append(required, f.name)
			}
		}
		s := map[string]any{"type": "object", "properties": props}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}
