package ingest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/kafkabroker"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

// TestKafkaDown: with Kafka gone ingest becomes not ready, stops confirming
// the slot (so PostgreSQL keeps the WAL), keeps retrying, and once Kafka is
// back delivers every row committed meanwhile.
func TestKafkaDown(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	b, err := kafkabroker.Start(kafkabroker.Config{Partitions: 1, DataDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.broker = b.Addr()
	_, portStr, _ := net.SplitHostPort(b.Addr())
	port, _ := strconv.Atoi(portStr)
	tbl := e.table("kdown")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, v text)`)
	topic := cdc.Topic("public", tbl)
	r := start(t, e.config(tbl), ingest.Deps{})
	r.waitReady(t)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (1, 'before')`)
	e.waitEvents(topic, 30*time.Second, "first row", atLeast(1))

	b.Close()
	for i := 0; i < 20; i++ {
		e.exec(`INSERT INTO `+tbl+` SELECT g, 'during' FROM generate_series($1::int, $2::int) g`, 2+i*50, 1+(i+1)*50)
	}
	var written string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&written); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "readyz to report kafka down", func() error {
		code, body, err := r.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka") {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
	var behind bool
	if err := e.db.QueryRow(context.Background(),
		`SELECT confirmed_flush_lsn < $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, e.name, written).Scan(&behind); err != nil {
		t.Fatal(err)
	}
	if !behind {
		t.Fatalf("slot confirmed past %s while Kafka was down", written)
	}

	b2, err := kafkabroker.Start(kafkabroker.Config{Port: port, Partitions: 1, DataDir: dir}, nil)
	if err != nil {
		t.Fatalf("restart broker on %d: %v", port, err)
	}
	t.Cleanup(b2.Close)
	e.waitEvents(topic, 60*time.Second, "rows committed while Kafka was down", allIDs(1001))
	r.waitReady(t)
}

// TestIdleSlotAdvances: while the captured table is idle and another table
// churns, the slot's confirmed position keeps up with the WAL, so the server
// can recycle it (bounded retention).
func TestIdleSlotAdvances(t *testing.T) {
	e := newEnv(t)
	quiet, busy := e.table("quiet"), e.table("busy")
	e.exec(`CREATE TABLE ` + quiet + ` (id int PRIMARY KEY)`)
	e.exec(`CREATE TABLE ` + busy + ` (id int PRIMARY KEY, v text)`)
	r := start(t, e.config(quiet), ingest.Deps{})
	r.waitReady(t)
	e.exec(`INSERT INTO ` + quiet + ` VALUES (1)`)
	e.waitEvents(cdc.Topic("public", quiet), 30*time.Second, "the quiet table's row", atLeast(1))
	for i := 0; i < 10; i++ {
		e.exec(`INSERT INTO `+busy+` SELECT g, repeat('x', 100) FROM generate_series($1::int, $2::int) g`, i*1000+1, (i+1)*1000)
	}
	var target string
	if err := e.db.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "slot confirmed past the busy table's writes at "+target, func() error {
		var ok bool
		var at string
		err := e.db.QueryRow(context.Background(),
			`SELECT confirmed_flush_lsn >= $2::pg_lsn, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
			e.name, target).Scan(&ok, &at)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("confirmed at %s", at)
		}
		return nil
	})
}
