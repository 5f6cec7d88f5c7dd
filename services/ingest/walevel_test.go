package ingest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

// TestWalLevelNotLogical: against a server with wal_level=replica, ingest
// stays up, not ready, and says which setting to change.
func TestWalLevelNotLogical(t *testing.T) {
	dsn := testutil.ThrowawayPostgres(t, "wal_level=replica")
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
