package ingest_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/services/ingest"
)

func TestSnapshotThenStreamThenRestart(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("acct")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, name text, amount numeric(10,2), at timestamptz)`)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (1, 'a', 1.50, '2024-01-02 03:04:05.5+00'), (2, 'b', 2.25, NULL), (3, 'c', NULL, NULL)`)
	topic := cdc.Topic("public", tbl)

	r := start(t, e.config(tbl), ingest.Deps{})
	r.waitReady(t)
	evs := e.waitEvents(topic, 30*time.Second, "3 snapshot rows", atLeast(3))
	if got := ops(evs); got != "rrr" {
		t.Fatalf("ops = %q, want rrr", got)
	}
	first := evs[0]
	if num(first.Key["id"]) != "1" || len(first.Key) != 1 {
		t.Errorf("key = %v, want {id:1}", first.Key)
	}
	if a := first.Env.After; num(a["id"]) != "1" || a["name"] != "a" || a["amount"] != "1.50" || a["at"] != "2024-01-02T03:04:05.5Z" {
		t.Errorf("after = %v", a)
	}
	if first.Env.Before != nil {
		t.Errorf("snapshot before = %v, want null", first.Env.Before)
	}
	if s := first.Env.Source; s.Table != tbl || s.Schema != "public" || s.Connector != "postgresql" || s.Snapshot != "true" || s.LSN == 0 {
		t.Errorf("source = %+v", s)
	}
	if evs[2].Env.Source.Snapshot != "last" {
		t.Errorf("final snapshot row source.snapshot = %q, want last", evs[2].Env.Source.Snapshot)
	}

	e.exec(`INSERT INTO ` + tbl + ` VALUES (4, 'd', 4.00, now())`)
	e.exec(`UPDATE ` + tbl + ` SET name = 'a2' WHERE id = 1`)
	e.exec(`DELETE FROM ` + tbl + ` WHERE id = 2`)
	evs = e.waitEvents(topic, 30*time.Second, "insert, update, delete and tombstone", atLeast(7))
	if got := ops(evs); got != "rrrcud~" {
		t.Fatalf("ops = %q, want rrrcud~", got)
	}
	c, u, d, tomb := evs[3], evs[4], evs[5], evs[6]
	if num(c.Key["id"]) != "4" || c.Env.After["name"] != "d" || c.Env.Source.Snapshot != "false" || c.Env.Source.TxID == 0 {
		t.Errorf("create = key %v %+v", c.Key, c.Env)
	}
	if u.Env.After["name"] != "a2" || num(u.Key["id"]) != "1" {
		t.Errorf("update = key %v after %v", u.Key, u.Env.After)
	}
	if d.Env.After != nil || num(d.Env.Before["id"]) != "2" || num(d.Key["id"]) != "2" {
		t.Errorf("delete = key %v before %v after %v", d.Key, d.Env.Before, d.Env.After)
	}
	if tomb.Raw.Value != nil || num(tomb.Key["id"]) != "2" {
		t.Errorf("tombstone = key %v value %q", tomb.Key, tomb.Raw.Value)
	}
	// Stream positions increase, and the sequence agrees with lsn.
	var last cdc.Position
	for _, ev := range []event{c, u, d} {
		pos, err := cdc.ParseSequence(ev.Env.Source.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if !last.Less(pos) || pos.LSN != uint64(ev.Env.Source.LSN) {
			t.Errorf("position %+v after %+v (lsn %d)", pos, last, ev.Env.Source.LSN)
		}
		last = pos
	}

	code, body, err := r.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics: %d %v", code, err)
	}
	for _, want := range []string{
		`tributary_ingest_rows_total{`,
		`tributary_ingest_replication_lag_bytes`,
		`tributary_ingest_replication_lag_seconds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(body, `op="r"`) || !strings.Contains(body, `table="public.`+tbl+`"`) {
		t.Errorf("metrics lack table label for %s", tbl)
	}

	// Restart: no second snapshot, streaming resumes.
	r.stop(t)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (5, 'e', 5.00, now())`)
	r2 := start(t, e.config(tbl), ingest.Deps{})
	r2.waitReady(t)
	evs = e.waitEvents(topic, 30*time.Second, "insert after restart", func(evs []event) error {
		for _, ev := range evs {
			if ev.Env != nil && ev.Env.Op == cdc.OpCreate && num(ev.Key["id"]) == "5" {
				return nil
			}
		}
		return fmt.Errorf("no create of id 5 in %s", ops(evs))
	})
	if n := strings.Count(ops(evs), "r"); n != 3 {
		t.Errorf("after restart %d snapshot rows (ops %s), want 3: restart snapshotted again", n, ops(evs))
	}
}
