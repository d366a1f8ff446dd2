package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/edupulse/eventbus/config"
)

// effectiveConfig is what `eventbus config` prints.
type effectiveConfig struct {
	// File is the configuration file read, "" for none.
	File     string                    `json:"config_file" yaml:"config_file"`
	Settings map[string]config.Setting `json:"settings" yaml:"settings"`
}

func (a *app) configCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration: each setting's value and where it came from, secrets masked",
		Long: `config prints the configuration the other commands would use, after
checking it: for each setting, its value and its origin, one of flag, env,
file (with the line) or default. Flags override the environment, which
overrides the configuration file (--config or EVENTBUS_CONFIG), which
overrides the defaults.

Passwords in the database and broker URLs and the API tokens' secrets are
printed as xxxxx. An invalid configuration exits 2 with the problem, as
every command does.`,
		Example: `  eventbus config
  eventbus config --config /etc/eventbus/eventbus.yaml
  EVENTBUS_CONFIG=eventbus.yaml eventbus config --output json | jq -r .settings.EVENTBUS_HTTP_ADDR.origin`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return usagef(cmd, "--output %q: use yaml or json", output)
			}
			cfg, settings, err := config.Explain(a.lookupEnv, a.flags)
			if err != nil {
				return &usageError{cmd: cmd, err: err}
			}
			doc := effectiveConfig{File: cfg.File, Settings: make(map[string]config.Setting, len(settings))}
			for _, s := range settings {
				doc.Settings[s.Key] = s
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			enc := yaml.NewEncoder(a.stdout)
			enc.SetIndent(2)
			if err := enc.Encode(doc); err != nil {
				return fmt.Errorf("print the configuration: %w", err)
			}
			return enc.Close()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}
