package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
)

// rawCache holds the append statements prepared on the write connection,
// at the driver's level. They belong to one connection: if database/sql
// replaces it, they are prepared again on the new one.
//
// database/sql closes the write connection on its own when it turns bad
// (for example after a query on it was interrupted because its context
// ended), and the driver's Close frees what finalizing a statement needs.
// So statements are finalized only on the connection they were prepared
// on, while the caller holds it; the statements of a connection that has
// been replaced are dropped, never finalized. The write pool holds one
// connection, so a connection other than the cached one means that the
// cached one was closed first.
type rawCache struct {
	mu    sync.Mutex
	conn  any
	stmts [numStmts]driver.Stmt
}

// writer returns a writer on dc, the write connection's driver connection,
// preparing the statements if dc is new.
func (c *rawCache) writer(dc any) (*rawWriter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, ok := dc.(interface {
		driver.ConnPrepareContext
		driver.ExecerContext
	})
	if !ok {
		return nil, fmt.Errorf("the driver's connection (%T) cannot prepare or execute with a context", dc)
	}
	if c.conn != dc {
		c.releaseLocked(dc)
		c.conn = dc
		for i, q := range stmtSQL {
			st, err := conn.PrepareContext(context.Background(), q)
			if err != nil {
				c.releaseLocked(dc)
				return nil, fmt.Errorf("prepare (is the schema migrated?): %w", err)
			}
			c.stmts[i] = st
		}
	}
	return &rawWriter{cache: c, conn: conn, dc: dc, stmts: c.stmts}, nil
}

// release empties the cache. dc is the driver connection that the caller
// holds: the statements are finalized only if they were prepared on it.
func (c *rawCache) release(dc any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(dc)
}

func (c *rawCache) releaseLocked(dc any) {
	for i, st := range c.stmts {
		if st != nil && c.conn == dc {
			_ = st.Close()
		}
		c.stmts[i] = nil
	}
	c.conn = nil
}

// rawWriter runs the append statements on the driver's connection, without
// database/sql: no goroutine per query, no conversions.
type rawWriter struct {
	cache *rawCache
	conn  driver.ExecerContext
	dc    any // the driver connection, as database/sql hands it out
	stmts [numStmts]driver.Stmt
}

func (w *rawWriter) execSQL(query string) error {
	_, err := w.conn.ExecContext(context.Background(), query, nil)
	return err
}

// discard closes the statements and returns driver.ErrBadConn, which makes
// database/sql close the connection.
func (w *rawWriter) discard() error {
	w.cache.release(w.dc)
	return driver.ErrBadConn
}

func named(args []any) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return nv
}

func (w *rawWriter) exec(ctx context.Context, id stmtID, args ...any) (int64, error) {
	res, err := w.stmts[id].(driver.StmtExecContext).ExecContext(ctx, named(args))
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (w *rawWriter) queryRow(ctx context.Context, id stmtID, args ...any) scanner {
	rows, err := w.stmts[id].(driver.StmtQueryContext).QueryContext(ctx, named(args))
	if err != nil {
		return rawRow{err: err}
	}
	defer func() { _ = rows.Close() }()
	vals := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(vals); err != nil {
		if errors.Is(err, io.EOF) {
			err = sql.ErrNoRows
		}
		return rawRow{err: err}
	}
	for i, v := range vals {
		if b, ok := v.([]byte); ok { // may point into SQLite's memory
			vals[i] = append([]byte(nil), b...)
		}
	}
	return rawRow{vals: vals}
}

// rawRow is one row of driver values, scanned into the few destination
// types the store uses.
type rawRow struct {
	vals []driver.Value
	err  error
}

func (r rawRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if len(dest) != len(r.vals) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(r.vals))
	}
	for i, d := range dest {
		v := r.vals[i]
		var ok bool
		switch d := d.(type) {
		case sql.Scanner:
			if err := d.Scan(v); err != nil {
				return fmt.Errorf("scan column %d: %w", i, err)
			}
			ok = true
		case *int64:
			*d, ok = v.(int64)
		case *string:
			switch v := v.(type) {
			case string:
				*d, ok = v, true
			case []byte:
				*d, ok = string(v), true
			}
		case *[]byte:
			switch v := v.(type) {
			case string:
				*d, ok = []byte(v), true
			case []byte:
				*d, ok = v, true
			}
		}
		if !ok {
			return fmt.Errorf("scan column %d: cannot store %T in %T", i, v, d)
		}
	}
	return nil
}
