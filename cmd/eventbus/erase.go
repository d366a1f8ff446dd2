package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/service"
)

func (a *app) eraseCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "erase DATA_SUBJECT_ID",
		Short: "Erase a data subject's personal data (crypto-shredding)",
		Long: `erase destroys the data subject's key and records a datasubject.erased
event that names you (the token's name with --server, else cli:$USER), in
one transaction. Every event stays in the store; from then on the subject's
personal fields (score_raw of quiz.submitted, reason of badge.awarded, the
fields a producer declared with "personal") read as null everywhere, the
events marked erased: reads, the live stream, replays and relay publishes.
The relay delivers the datasubject.erased event, so that workers erase
their own copies. Erasing an unknown or already erased subject succeeds.
There is no undo.`,
		Example: `  eventbus erase 0190d1e2-7c4a-7b3e-8f00-1234567890ac
  eventbus erase --server http://127.0.0.1:8080 learner-42`,
		Args: exactArgs(1, "DATA_SUBJECT_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			subject := args[0]
			if err := service.CheckDataSubject(subject); err != nil {
				return usagef(cmd, "the data subject's id %s", err.Error())
			}
			c, err := a.remote(cmd)
			if err != nil {
				return err
			}
			var erasedAt time.Time
			var eventID string
			if c != nil {
				res, err := c.Erase(cmd.Context(), subject)
				if err != nil {
					return remoteError(c, err)
				}
				erasedAt, eventID = res.ErasedAt, res.EventID
			} else {
				svc, err := a.open(cmd, service.Config{StoreOnly: true, MustExist: true})
				if err != nil {
					return err
				}
				defer svc.Close()
				res, err := svc.Erase(cmd.Context(), subject, service.CLIUser())
				if err != nil {
					return err
				}
				erasedAt, eventID = res.ErasedAt, res.Recorded.Envelope.ID.String()
			}
			if asJSON {
				return printJSON(a.stdout, map[string]any{"data_subject": subject, "erased_at": erasedAt.UTC(), "event_id": eventID})
			}
			fmt.Fprintf(a.stdout, "erased %s (since %s); recorded in event %s\n", subject, erasedAt.UTC().Format(time.RFC3339Nano), eventID)
			return nil
		},
	}
	a.addServerFlag(cmd, false, "admin")
	needsScope(cmd, "admin")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) keysCmd() *cobra.Command {
	keys := subcommands(&cobra.Command{
		Use:   "keys",
		Short: "Manage the data subjects' keys of erasure",
		Long: `The personal fields of events are encrypted with a key per data subject,
kept in the store wrapped under the master key (EVENTBUS_MASTER_KEY or
EVENTBUS_MASTER_KEY_FILE; the embedded default keeps one in its data
directory). 'keys rotate' moves every key to a new master key.`,
	})
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Rewrap every data subject's key under the primary master key",
		Long: `rotate rewraps each subject key that is wrapped under another master key
than the primary one (the first of EVENTBUS_MASTER_KEY) under the primary,
one row at a time, while the service runs: a key reads under its old master
key until its row is rewrapped, and under the new one after. To rotate
without downtime (docs/erasure.md):
  1. give every process "OLD,NEW" (NEW is accepted, not yet used);
  2. then "NEW,OLD" (NEW wraps new keys);
  3. run 'eventbus keys rotate' with "NEW,OLD";
  4. give every process "NEW" alone.
It is safe to run again: it goes on where it stopped.`,
		Example: `  EVENTBUS_MASTER_KEY="$NEW,$OLD" eventbus keys rotate`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := a.open(cmd, service.Config{StoreOnly: true, MustExist: true})
			if err != nil {
				return err
			}
			defer svc.Close()
			if svc.EphemeralKEK() {
				return fmt.Errorf("no master key is configured or found: set %s to \"NEW,OLD\" (or %s to a file holding them) to rotate", config.EnvMasterKey, config.EnvMasterKeyFile)
			}
			n, err := svc.Keyring().Rotate(cmd.Context())
			if err != nil {
				return fmt.Errorf("%w (%d keys rewrapped before it; run it again to go on)", err, n)
			}
			fmt.Fprintf(a.stdout, "rewrapped %d data subject keys under %s\n", n, svc.Keyring().KEKs().Primary())
			return nil
		},
	}
	keys.AddCommand(rotate)
	return keys
}
