package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/edupulse/eventbus/client"
	"github.com/edupulse/eventbus/config"
	"github.com/edupulse/eventbus/store"
)

// The commands that read or operate a running service (events, tail,
// status, replay, dlq, parked) reach it through its HTTP API with --server
// or EVENTBUS_SERVER, instead of opening the store and the broker.
const (
	envServer   = "EVENTBUS_SERVER"
	envAPIToken = "EVENTBUS_API_TOKEN"
)

// addServerFlag adds --server to cmd (to its subcommands too when
// persistent); scope is the token scope the command needs, for the help
// and the errors. A subcommand may say its own with needsScope.
func (a *app) addServerFlag(cmd *cobra.Command, persistent bool, scope string) {
	fs := cmd.Flags()
	if persistent {
		fs = cmd.PersistentFlags()
	}
	fs.StringVar(&a.server, "server", "", fmt.Sprintf("talk to a running 'eventbus serve' at this URL instead of opening the store (default $%s; a token in $%s)", envServer, envAPIToken))
	needsScope(cmd, scope)
}

// needsScope records the token scope cmd needs through a server.
func needsScope(cmd *cobra.Command, scope string) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations["scope"] = scope
}

// remoteServer is the client of the server a command talks to, and the
// token scope the command needs there.
type remoteServer struct {
	*client.Client
	scope string
}

// serverURL is the --server of the command, or EVENTBUS_SERVER: "" when
// the command opens the store itself.
func (a *app) serverURL() string {
	if a.server != "" {
		return a.server
	}
	return os.Getenv(envServer)
}

// apiToken is the token sent to the server: EVENTBUS_API_TOKEN, or
// EVENTBUS_TOKEN, its older name.
func apiToken() string {
	if t := os.Getenv(envAPIToken); t != "" {
		return t
	}
	return os.Getenv(envToken)
}

// remote returns the client of the server the command names, or nil when
// it names none. Each call is bounded by twice the request timeout: the
// server answers within one (503 when its store does not), the rest is
// the network's.
func (a *app) remote(cmd *cobra.Command) (*remoteServer, error) {
	server := a.serverURL()
	if server == "" {
		return nil, nil
	}
	cfg, err := a.config(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.New(server, client.Config{Token: apiToken(), Timeout: 2 * cfg.RequestTimeout,
		UserAgent: "eventbus-cli", StoredVersions: storedVersions(cmd)})
	if err != nil {
		return nil, usagef(cmd, "--server %q (or %s): give the serve address as http://host:port", server, envServer)
	}
	r := &remoteServer{Client: c}
	for p := cmd; p != nil && r.scope == ""; p = p.Parent() {
		r.scope = p.Annotations["scope"]
	}
	return r, nil
}

// remoteError says what the server's answer means for the command, and
// what to do.
func remoteError(c *remoteServer, err error) error {
	var e *client.Error
	switch {
	case errors.Is(err, client.ErrUnauthorized):
		return fmt.Errorf("%w; set %s to a token of the server's %s", err, envAPIToken, config.EnvAPITokens)
	case errors.Is(err, client.ErrForbidden):
		return fmt.Errorf("%w; %s must hold a token with the %s scope", err, envAPIToken, c.scope)
	case errors.Is(err, client.ErrUnreachable):
		return fmt.Errorf("%w; check that 'eventbus serve' runs at %s", err, c.BaseURL())
	case errors.As(err, &e) && e.RequestID != "":
		return fmt.Errorf("%w (request %s)", err, e.RequestID)
	}
	return err
}

// clientFilter is the store filter of the command line as the API's.
func clientFilter(f store.Filter) client.Filter {
	return client.Filter{After: f.After.String(), Limit: f.Limit, Types: f.Types, CorrelationID: f.CorrelationID,
		Subject: f.Subject, Since: f.Since, Until: f.Until, FromPosition: f.FromPosition, ToPosition: f.ToPosition}
}

// noRelayFlag refuses --relay with --server: the server reports its own
// relay.
func noRelayFlag(cmd *cobra.Command) error {
	if f := cmd.Flags().Lookup("relay"); f != nil && f.Changed {
		return usagef(cmd, "--relay does not go with --server: the server reports its own relay")
	}
	return nil
}
