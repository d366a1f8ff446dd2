package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the table that records which migrations have run.
const VersionTable = "eventbus_schema_version"

// migrateAttempts bounds how often Migrate starts over when another process
// migrated the same file at the same time.
const migrateAttempts = 3

// Migrate brings the schema up to date. Each migration runs in an IMMEDIATE
// transaction, so it applies whole or not at all. Two processes migrating
// the same file at once can both try the same migration; the loser's
// attempt rolls back, and Migrate then finds the schema up to date.
// Migrations are versioned and never edited once released.
func (s *Store) Migrate(ctx context.Context) error {
	provider, err := s.provider()
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		before, verr := provider.GetDBVersion(ctx)
		_, err = provider.Up(ctx)
		if err == nil {
			return nil
		}
		after, aerr := provider.GetDBVersion(ctx)
		if verr != nil || aerr != nil || after <= before || attempt == migrateAttempts {
			return s.wrap(err, "migrate")
		}
		// Another process applied a migration meanwhile: try again.
	}
}

// SchemaVersion returns the version the schema is at, and the newest version
// this build knows.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	provider, err := s.provider()
	if err != nil {
		return 0, 0, err
	}
	if current, err = provider.GetDBVersion(ctx); err != nil {
		return 0, 0, s.wrap(err, "read schema version")
	}
	sources := provider.ListSources()
	if len(sources) > 0 {
		latest = sources[len(sources)-1].Version
	}
	return current, latest, nil
}

func (s *Store) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, s.write, sub,
		goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	return provider, nil
}
