package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/edupulse"
	"github.com/edupulse/eventbus/event"
	"github.com/edupulse/eventbus/httpapi/wire"
)

// schemasCmd is `eventbus schemas`: the event types a server, a build or a
// schema directory declares, and the check a producer's CI runs on its
// schema files (DESIGN "Types declared outside Go").
func (a *app) schemasCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "List event types and their versions; check a directory of schema files",
		Long: `schemas lists the event types a server knows, or that a directory of JSON
Schema files declares, and checks such a directory.

A type is declared outside Go by one JSON Schema (draft 2020-12) per version,
in a file named {type}.v{N}.json, in the directory EVENTBUS_SCHEMA_DIR names.
'serve' loads it at start-up and refuses to start when a file is bad;
'schemas check DIR' runs the same checks, for a producer's CI.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.schemasListCmd(), a.schemasCheckCmd())
	return cmd
}

func (a *app) schemasListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list [DIR]",
		Short: "List event types: of a server (--server), of a directory, or of this build and EVENTBUS_SCHEMA_DIR",
		Long: `list prints every event type with where it comes from (go: registered in
Go; file: declared by a schema file), its versions and the personal fields its
schema names. With --server (or EVENTBUS_SERVER) it asks a running server
(GET /v1/schemas, read scope); with DIR it reads that directory of schema
files; with neither, this build's types and those of EVENTBUS_SCHEMA_DIR.
--output json prints the answer of GET /v1/schemas.`,
		Example: `  eventbus schemas list
  eventbus schemas list ./schemas --output json
  eventbus schemas list --server http://127.0.0.1:8080`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usagef(cmd, "--output %q: use table or json", output)
			}
			if len(args) > 1 {
				return usagef(cmd, "list takes at most one argument, a directory of schema files; got %d", len(args))
			}
			types, err := a.listTypes(cmd, args)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(wire.Schemas{Types: types})
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TYPE\tORIGIN\tVERSIONS\tDATA SUBJECT\tPERSONAL")
			for _, t := range types {
				subject, personal := personalOf(t)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Type, t.Origin, versionList(t), dash(subject), dash(strings.Join(personal, ", ")))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	a.addServerFlag(cmd, false, "read")
	return cmd
}

// listTypes returns the types list shows.
func (a *app) listTypes(cmd *cobra.Command, args []string) ([]event.TypeInfo, error) {
	if len(args) == 1 {
		if a.server != "" {
			return nil, usagef(cmd, "give a directory or --server, not both")
		}
		declared, err := event.ReadSchemaDir(args[0], edupulse.Registry())
		if err != nil {
			return nil, schemaDirError(a, err)
		}
		reg := event.NewRegistry()
		if err := reg.Declare(declared); err != nil {
			return nil, err
		}
		return reg.Describe(), nil
	}
	c, err := a.remote(cmd)
	if err != nil {
		return nil, err
	}
	if c != nil {
		types, err := c.Schemas(cmd.Context())
		return types, remoteError(c, err)
	}
	cfg, err := a.config(cmd)
	if err != nil {
		return nil, err
	}
	reg := edupulse.Registry()
	if cfg.SchemaDir != "" {
		if _, err := event.LoadSchemaDir(reg, cfg.SchemaDir); err != nil {
			return nil, schemaDirError(a, err)
		}
	}
	return reg.Describe(), nil
}

func (a *app) schemasCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check DIR",
		Short: "Check a directory of schema files as 'serve' does at start-up; exit 1 naming each bad file",
		Long: `check reads every file of DIR as 'serve' reads EVENTBUS_SCHEMA_DIR: each must
be named {type}.v{N}.json, be a JSON Schema of draft 2020-12 that compiles on
its own (no reference to another file or URL), name its personal data with
valid x-eventbus-data-subject and x-eventbus-personal keywords, and not
declare a type registered in Go in this build; the versions of a type start
at 1 and skip none. It exits 0 when all is well, 1 after printing one line
per bad file (what a producer's CI runs before a deploy), 2 on a usage error.`,
		Example: `  eventbus schemas check ./schemas`,
		Args:    exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			declared, err := event.ReadSchemaDir(args[0], edupulse.Registry())
			if err != nil {
				return schemaDirError(a, err)
			}
			files := 0
			for _, t := range declared {
				files += len(t.Versions)
			}
			fmt.Fprintf(a.stdout, "%s: %d types in %d files, all valid\n", args[0], len(declared), files)
			return nil
		},
	}
}

// schemaDirError prints each bad file of a schema directory on a line of
// its own, and returns the error that ends the command.
func schemaDirError(a *app, err error) error {
	var derr *event.SchemaDirError
	if !errors.As(err, &derr) {
		return err
	}
	for _, f := range derr.Files {
		fmt.Fprintln(a.stderr, f.Error())
	}
	n := "1 bad file"
	if len(derr.Files) != 1 {
		n = fmt.Sprintf("%d bad files", len(derr.Files))
	}
	return fmt.Errorf("%s: %s (listed above); fix them and check again", derr.Dir, n)
}

// personalOf reads the personal data a type's latest schema names.
func personalOf(t event.TypeInfo) (string, []string) {
	if len(t.Versions) == 0 {
		return "", nil
	}
	var kw struct {
		Subject  string   `json:"x-eventbus-data-subject"`
		Personal []string `json:"x-eventbus-personal"`
	}
	_ = json.Unmarshal(t.Versions[len(t.Versions)-1].Schema, &kw)
	return kw.Subject, kw.Personal
}

func versionList(t event.TypeInfo) string {
	parts := make([]string, len(t.Versions))
	for i, v := range t.Versions {
		parts[i] = fmt.Sprint(v.Version)
	}
	return strings.Join(parts, ", ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
