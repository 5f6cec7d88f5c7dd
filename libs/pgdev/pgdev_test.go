package pgdev

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartServesLogicalReplicationAndStopRemovesEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, nil, "max_connections=50")
	if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	var walLevel, maxConns string
	err = conn.QueryRow(ctx, "SELECT current_setting('wal_level'), current_setting('max_connections')").Scan(&walLevel, &maxConns)
	_ = conn.Close(ctx)
	c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" || maxConns != "50" {
		t.Errorf("wal_level %s, max_connections %s; want logical and the extra setting 50", walLevel, maxConns)
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still there after Stop (%v)", c.dir, err)
	}
}

func TestSweepRemovesOnlyStaleDirectories(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	stale := filepath.Join(tmp, dirPrefix+"stale")
	fresh := filepath.Join(tmp, dirPrefix+"fresh")
	running := filepath.Join(tmp, dirPrefix+"running")
	for _, d := range []string{stale, fresh, running} {
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A server whose pid is alive (this test process) is left alone.
	if err := os.WriteFile(filepath.Join(running, "data", "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{stale, running} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	sweep(nil)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("stale directory was not removed")
	}
	for _, d := range []string{fresh, running} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
