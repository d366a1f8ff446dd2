package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/internal/buildinfo"
)

func (a *app) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the build: module version, VCS commit, Go version",
		Long: `version prints which build of eventbus this is: the module version (a tag
for go install ...@vX.Y.Z, "(devel)" for a build from a work tree), the VCS
commit it was built from and whether the work tree had uncommitted changes,
and the Go toolchain. The service exports the same as the metric
eventbus_build_info. It needs no configuration and opens nothing.`,
		Example: `  eventbus version
  eventbus version --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Read()
			if asJSON {
				return printJSON(a.stdout, info)
			}
			_, err := fmt.Fprint(a.stdout, info.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
