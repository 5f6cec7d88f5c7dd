package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

// TestHeartbeatAdvancesIdleSlot runs ingest with --heartbeat-interval against
// a private cluster in which nothing else writes: there the WAL (and so the
// slot) only moves because of ingest's heartbeats. An observer slot
// (test_decoding, which shows logical messages) proves the heartbeats are in
// the WAL, and ingest's slot is confirmed past them. Without heartbeats the
// cluster's WAL stands still and the test fails.
func TestHeartbeatAdvancesIdleSlot(t *testing.T) {
	// No checkpoint or autovacuum during the test: with heartbeats off, this
	// cluster's WAL position stood still for the whole 20 s wait.
	dsn := testutil.ThrowawayPostgres(t, "wal_level=logical", "checkpoint_timeout=1h", "autovacuum=off")
	ctx := testutil.Context(t, time.Minute)
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	for _, sql := range []string{
		`CREATE TABLE public.idle (id int PRIMARY KEY)`,
		`SELECT pg_create_logical_replication_slot('observer', 'test_decoding')`,
	} {
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	cfg := ingest.DefaultConfig()
	cfg.Common.KafkaBrokers = testutil.Kafka(t, 1)
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "warn"
	cfg.PostgresDSN = dsn
	cfg.Tables = "public.idle"
	cfg.Mask = ""
	cfg.StatusInterval = 50 * time.Millisecond
	cfg.HeartbeatInterval = 100 * time.Millisecond
	r := start(t, cfg, ingest.Deps{})
	r.waitReady(t)

	// The heartbeats ingest wrote, in WAL order, as the observer slot decodes them.
	heartbeats := func() ([]string, error) {
		rows, err := db.Query(ctx, `SELECT lsn::text FROM pg_logical_slot_peek_changes('observer', NULL, NULL)
			WHERE data LIKE 'message: transactional: 0 prefix: tributary.heartbeat,%'`)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var third string
	testutil.Eventually(t, 20*time.Second, "three heartbeat messages in the WAL", func() error {
		hb, err := heartbeats()
		if err != nil {
			return err
		}
		if len(hb) < 3 {
			var wal string
			_ = db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&wal)
			return fmt.Errorf("%d heartbeats; WAL at %s", len(hb), wal)
		}
		third = hb[2]
		return nil
	})
	testutil.Eventually(t, 20*time.Second, "slot "+cfg.Slot+" confirmed past the third heartbeat at "+third, func() error {
		var past bool
		var at string
		if err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn > $2::pg_lsn, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
			cfg.Slot, third).Scan(&past, &at); err != nil {
			return err
		}
		if !past {
			return fmt.Errorf("confirmed at %s", at)
		}
		return nil
	})
	hb, err := heartbeats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d heartbeats, slot confirmed past %s", len(hb), strings.Join(hb[:3], ", "))
}
