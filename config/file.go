package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/edupulse/eventbus/internal/connurl"
)

// maxFileSize bounds a configuration file: a few settings take a few
// hundred bytes, so a bigger file is a mistake (a log, a dump).
const maxFileSize = 1 << 20

// file is a configuration file as read: its path and the settings it sets,
// by environment variable name.
type file struct {
	path   string
	values map[string]fileValue
}

// fileValue is one setting of a file, and the line it is on.
type fileValue struct {
	value string
	line  int
}

// filePath returns the configuration file to read: --config when given
// (an empty one means none), else EVENTBUS_CONFIG; "" for none.
func filePath(lookupEnv func(string) (string, bool), flags *Flags) string {
	if flags != nil && flags.fs.Changed(FlagConfig) {
		v, _ := flags.fs.GetString(FlagConfig)
		return strings.TrimSpace(v)
	}
	v, _ := lookupEnv(EnvConfig)
	return strings.TrimSpace(v)
}

// readFile reads and checks the configuration file at path. It refuses a
// file that holds secrets and that others than its owner may read, and a
// file that anybody may write (see checkFileMode).
func readFile(path string) (file, error) {
	f, err := os.Open(path)
	if err != nil {
		return file{}, fmt.Errorf("%w: configuration file (--%s or %s): %w", ErrInvalid, FlagConfig, EnvConfig, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return file{}, fmt.Errorf("%w: configuration file %s: %w", ErrInvalid, path, err)
	}
	if !info.Mode().IsRegular() {
		return file{}, fmt.Errorf("%w: configuration file %s is not a regular file (%s)", ErrInvalid, path, info.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return file{}, fmt.Errorf("%w: configuration file %s: %w", ErrInvalid, path, err)
	}
	if len(data) > maxFileSize {
		return file{}, fmt.Errorf("%w: configuration file %s is over %d bytes; it holds a few settings", ErrInvalid, path, maxFileSize)
	}
	values, err := parseFile(data)
	if le := (*lineError)(nil); errors.As(err, &le) {
		return file{}, fmt.Errorf("%s:%d: %w: %w", path, le.line, ErrInvalid, le.err)
	}
	if err != nil {
		return file{}, fmt.Errorf("%w: configuration file %s: %w", ErrInvalid, path, err)
	}
	if err := checkFileMode(path, info, secretKeys(values)); err != nil {
		return file{}, err
	}
	return file{path: path, values: values}, nil
}

// parseFile decodes a configuration file: one YAML mapping from the
// settings' environment variable names to their values, written as in the
// environment. Nothing else is accepted: an unknown key, a key given
// twice, a list or a mapping as a value, a second document. Errors name
// the key and the line, never a value (it may be a secret).
func parseFile(data []byte) (map[string]fileValue, error) {
	values := map[string]fileValue{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return values, nil // empty, or only comments
	case err != nil:
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("not valid YAML: %w", err)
	default:
		return nil, atLine(next.Line, "a second YAML document; the file holds one mapping of settings")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return values, nil // "---" alone, or "~"
	}
	if root.Kind != yaml.MappingNode {
		return nil, atLine(root.Line, "the file must be a mapping of settings, one per line, such as %s: %s", EnvHTTPAddr, DefaultHTTPAddr)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, atLine(k.Line, "a key must be a setting's name, such as %s", EnvHTTPAddr)
		}
		key := k.Value
		if !slices.ContainsFunc(settings, func(s setting) bool { return s.env == key }) {
			return nil, unknownKey(key, k.Line)
		}
		if first, twice := values[key]; twice {
			return nil, atLine(k.Line, "%s is set twice (first on line %d); keep one", key, first.line)
		}
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch {
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null":
			values[key] = fileValue{line: k.Line} // empty: unset, as in the environment
		case v.Kind == yaml.ScalarNode:
			values[key] = fileValue{value: strings.TrimSpace(v.Value), line: k.Line}
		default:
			return nil, atLine(k.Line, "%s must be one value, written as in the environment (a list separated by commas), not a %s", key, kindName(v.Kind))
		}
	}
	return values, nil
}

// lineError is a problem on a line of a configuration file.
type lineError struct {
	line int
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

// atLine makes a lineError.
func atLine(line int, format string, args ...any) error {
	return &lineError{line: line, err: fmt.Errorf(format, args...)}
}

// unknownKey is the error for a key that is no setting. A key that is a
// setting spelt another way (database_url, database-url) gets its name.
func unknownKey(key string, line int) error {
	if key == EnvConfig {
		return atLine(line, "%s names the configuration file; it cannot be set inside it", key)
	}
	guess := strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
	if !strings.HasPrefix(guess, "EVENTBUS_") {
		guess = "EVENTBUS_" + guess
	}
	if slices.ContainsFunc(settings, func(s setting) bool { return s.env == guess }) {
		return atLine(line, "unknown key %q: keys are the environment variables' names; did you mean %s?", key, guess)
	}
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.env
	}
	return atLine(line, "unknown key %q; the keys are %s", key, strings.Join(names, ", "))
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	default:
		return "YAML node of another kind"
	}
}

// secretKeys returns the settings of a file that hold a secret: a password
// in the database or a broker URL, API tokens.
func secretKeys(values map[string]fileValue) []string {
	var keys []string
	if len(connurl.Passwords(values[EnvDatabaseURL].value)) > 0 {
		keys = append(keys, EnvDatabaseURL)
	}
	for _, u := range strings.Split(values[EnvAMQPURL].value, ",") {
		if len(connurl.Passwords(u)) > 0 {
			keys = append(keys, EnvAMQPURL)
			break
		}
	}
	if values[EnvAPITokens].value != "" {
		keys = append(keys, EnvAPITokens)
	}
	if values[EnvMasterKey].value != "" {
		keys = append(keys, EnvMasterKey)
	}
	return keys
}

// checkFileMode refuses, as ssh does with a private key, a file that holds
// secrets and that others than its owner may read: the secrets are as good
// as out already, and a refusal at the start is seen where a warning in a
// log is not. As PostgreSQL does with its key file, a file owned by root
// may be readable by its group (root:eventbus, mode 0640). It also refuses
// a file that anybody may write, secrets or not: anybody could point the
// service at a database or a broker of theirs.
func checkFileMode(path string, info fs.FileInfo, secrets []string) error {
	perm := info.Mode().Perm()
	if !modeBitsMeaningful {
		return nil
	}
	if perm&0o002 != 0 {
		return fmt.Errorf("%w: configuration file %s is writable by anybody (mode %04o): anybody could change where the service stores and sends events; run chmod o-w %s",
			ErrInvalid, path, perm, path)
	}
	if len(secrets) == 0 {
		return nil
	}
	allowed := fs.FileMode(0o700)
	if ownedByRoot(info) {
		allowed = 0o740
	}
	if perm&^allowed == 0 {
		return nil
	}
	return fmt.Errorf("%w: configuration file %s holds secrets (%s) and others than its owner may read it (mode %04o); "+
		"run chmod 600 %s (a file owned by root may be 0640, for the service's group), or move the secrets to the environment",
		ErrInvalid, path, strings.Join(secrets, ", "), perm, path)
}

// FileValues returns the values the configuration file sets, by
// environment variable name, when it can be read and decoded; nil
// otherwise. Tools use it to know the secrets to scrub from text they did
// not compose, as they do with the environment and the flags.
func FileValues(lookupEnv func(string) (string, bool), flags *Flags) map[string]string {
	path := filePath(lookupEnv, flags)
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil || len(data) > maxFileSize {
		return nil
	}
	values, err := parseFile(data)
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(values))
	for k, v := range values {
		out[k] = v.value
	}
	return out
}

// checkSecretFileMode refuses a file of secrets (the master key file) that
// others than its owner may read, as checkFileMode does for a
// configuration file with secrets.
func checkSecretFileMode(path string, info fs.FileInfo) error {
	if !modeBitsMeaningful {
		return nil
	}
	perm := info.Mode().Perm()
	allowed := fs.FileMode(0o700)
	if ownedByRoot(info) {
		allowed = 0o740
	}
	if perm&^allowed == 0 {
		return nil
	}
	return fmt.Errorf("%w: the master key file %s may be read by others than its owner (mode %04o); run chmod 600 %s",
		ErrInvalid, path, perm, path)
}
