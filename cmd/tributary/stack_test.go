package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/stack"
)

// exampleDir is the fraud example, seen from this package's directory.
var exampleDir = filepath.Join("..", "..", "examples", "fraud")

// exampleDB is a fresh database of the PostgreSQL tests run against, with
// the example's schema applied: its DSN and a connection to it.
func exampleDB(t *testing.T, ctx context.Context, dsn string) (string, *pgx.Conn) {
	t.Helper()
	dbDSN := freshDatabase(t, ctx, dsn)
	db, err := pgx.Connect(ctx, dbDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	schema, err := os.ReadFile(filepath.Join(exampleDir, "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, string(schema)); err != nil {
		t.Fatal(err)
	}
	return dbDSN, db
}

// exampleStack is the configuration of a test's whole stack over the
// example and database dbDSN: free ports, a slot and publication named for
// the test (name), warnings to the test log.
func exampleStack(t *testing.T, dbDSN, name string) stack.Config {
	slot := fmt.Sprintf("tributary_%s_%d", name, os.Getpid())
	return stack.Config{
		FreePorts:   true,
		DataDir:     t.TempDir(),
		PostgresDSN: dbDSN,
		Slot:        slot,
		Publication: slot,
		FeaturesDir: filepath.Join(exampleDir, "features"),
		ModelsDir:   filepath.Join(exampleDir, "models"),
		LogLevel:    "warn",
		Log:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// runStack starts and runs the stack of cfg until the test ends (then
// stops it and drops its replication slot in the database of dsn), and
// waits until every service is ready.
func runStack(t *testing.T, ctx context.Context, cfg stack.Config, dsn string) *stack.Stack {
	t.Helper()
	st, err := stack.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("stack stopped with: %v", err)
		}
		dropSlot(t, dsn, cfg.Slot)
	})
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := st.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	return st
}
