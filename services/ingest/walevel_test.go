package ingest_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// throwawayPostgres starts a private PostgreSQL cluster with extra settings
// and returns its DSN. initdb refuses to run as root, so as root the cluster
// runs as the postgres user.
func throwawayPostgres(t *testing.T, settings ...string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		t.Skipf("no initdb in %s: %v", pgBin, err)
	}
	dir, err := os.MkdirTemp("", "ingest-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var wrap []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root without a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		wrap = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(args ...string) {
		t.Helper()
		full := append(append([]string{}, wrap...), args...)
		out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	data := filepath.Join(dir, "data")
	run(filepath.Join(pgBin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir)
	for _, s := range settings {
		opts += " -c " + s
	}
	run(filepath.Join(pgBin, "pg_ctl"), "-D", data, "-o", opts, "-w", "-l", filepath.Join(dir, "log"), "start")
	t.Cleanup(func() {
		full := append(append([]string{}, wrap...), filepath.Join(pgBin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
		_ = exec.Command(full[0], full[1:]...).Run()
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// TestWalLevelNotLogical: against a server with wal_level=replica, ingest
// stays up, not ready, and says which setting to change.
func TestWalLevelNotLogical(t *testing.T) {
	dsn := throwawayPostgres(t, "wal_level=replica")
	cfg := ingest.DefaultConfig()
	cfg.Common.KafkaBrokers = testutil.Kafka(t, 1)
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "error"
	cfg.PostgresDSN = dsn
	cfg.Tables = "public.t"
	cfg.Mask = ""
	r := start(t, cfg, ingest.Deps{})
	testutil.Eventually(t, 30*time.Second, "readyz to name wal_level", func() error {
		code, body, err := r.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `wal_level is "replica"`) || !strings.Contains(body, "wal_level = logical") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
}
