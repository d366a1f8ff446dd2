package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// VersionTable is the table that records which migrations have run.
const VersionTable = "eventbus_schema_version"

// Migrate brings the schema up to date. It is safe to run from several
// processes at once: a PostgreSQL advisory lock lets one migrate while the
// others wait. Migrations are versioned and never edited once released.
func (s *Store) Migrate(ctx context.Context) error {
	provider, closeDB, err := s.provider()
	if err != nil {
		return err
	}
	defer closeDB()
	if _, err := provider.Up(ctx); err != nil {
		return s.wrap(err, "migrate")
	}
	return nil
}

// SchemaVersion returns the version the schema is at, and the newest version
// this build knows.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	provider, closeDB, err := s.provider()
	if err != nil {
		return 0, 0, err
	}
	defer closeDB()
	if current, err = provider.GetDBVersion(ctx); err != nil {
		return 0, 0, s.wrap(err, "read schema version")
	}
	sources := provider.ListSources()
	if len(sources) > 0 {
		latest = sources[len(sources)-1].Version
	}
	return current, latest, nil
}

func (s *Store) provider() (*goose.Provider, func(), error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	provider, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithTableName(VersionTable), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	return provider, func() { _ = db.Close() }, nil
}
