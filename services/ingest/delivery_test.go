package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/services/ingest"
)

// writer inserts rows with increasing ids into table in transactions of
// batch rows until stopped, and remembers how many it committed.
type writer struct {
	committed atomic.Int64
	stop      chan struct{}
	done      chan error
}

func startWriter(t *testing.T, dsn, table string, from, limit, batch int) *writer {
	t.Helper()
	return startWriterSizes(t, dsn, table, from, limit, func() int { return batch })
}

// startWriterSizes is startWriter with transactions of size() rows each.
func startWriterSizes(t *testing.T, dsn, table string, from, limit int, size func() int) *writer {
	t.Helper()
	w := &writer{stop: make(chan struct{}), done: make(chan error, 1)}
	w.committed.Store(int64(from))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			w.done <- err
			return
		}
		defer conn.Close(context.Background())
		next := from
		for next < limit {
			select {
			case <-w.stop:
				w.done <- nil
				return
			default:
			}
			n := min(size(), limit-next)
			_, err := conn.Exec(ctx, `INSERT INTO `+table+` (id, v) SELECT g, 'row ' || g FROM generate_series($1::int, $2::int) g`, next+1, next+n)
			if err != nil {
				w.done <- fmt.Errorf("insert %d..%d: %w", next+1, next+n, err)
				return
			}
			next += n
			w.committed.Store(int64(next))
		}
		w.done <- nil
	}()
	return w
}

// finish stops the writer and returns how many rows it committed.
func (w *writer) finish(t *testing.T) int {
	t.Helper()
	close(w.stop)
	return w.wait(t)
}

// wait waits for the writer to reach its limit.
func (w *writer) wait(t *testing.T) int {
	t.Helper()
	if err := <-w.done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	return int(w.committed.Load())
}

// idCounts counts the row events per id (tombstones and truncates ignored).
func idCounts(evs []event) (map[int]int, map[int]int) {
	snap, stream := map[int]int{}, map[int]int{}
	for _, ev := range evs {
		if ev.Env == nil || ev.Env.After == nil {
			continue
		}
		var id int
		fmt.Sscan(num(ev.Env.After["id"]), &id)
		if ev.Env.Op == cdc.OpRead {
			snap[id]++
		} else {
			stream[id]++
		}
	}
	return snap, stream
}

func allIDs(n int) func([]event) error {
	return func(evs []event) error {
		snap, stream := idCounts(evs)
		for id := 1; id <= n; id++ {
			if snap[id]+stream[id] == 0 {
				return fmt.Errorf("id %d of %d missing (%d records)", id, n, len(evs))
			}
		}
		return nil
	}
}

// TestSnapshotStreamSeam starts ingest while a writer commits rows: every
// row is delivered exactly once, either by the snapshot (op r) or by the
// stream (op c), never both and never neither.
func TestSnapshotStreamSeam(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("seam")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, v text)`)
	e.exec(`INSERT INTO ` + tbl + ` SELECT g, 'pre ' || g FROM generate_series(1, 3000) g`)
	w := startWriter(t, e.dsn, tbl, 3000, 1_000_000, 20)
	r := start(t, e.config(tbl), ingest.Deps{MaxBatch: 200})
	topic := cdc.Topic("public", tbl)
	// Let the writer run across the snapshot and into the stream.
	e.waitEvents(topic, 60*time.Second, "stream events after the snapshot", func(evs []event) error {
		_, stream := idCounts(evs)
		if len(stream) < 500 {
			return fmt.Errorf("%d streamed rows so far", len(stream))
		}
		return nil
	})
	n := w.finish(t)
	evs := e.waitEvents(topic, 60*time.Second, fmt.Sprintf("all %d rows", n), allIDs(n))
	r.stop(t)
	snap, stream := idCounts(evs)
	if len(snap) < 3000 {
		t.Errorf("snapshot has %d rows, want at least the 3000 written before start", len(snap))
	}
	for id := 1; id <= n; id++ {
		if got := snap[id] + stream[id]; got != 1 {
			t.Errorf("id %d delivered %d times (snapshot %d, stream %d)", id, got, snap[id], stream[id])
		}
	}
	t.Logf("%d rows: %d by snapshot, %d by stream", n, len(snap), len(stream))
}

// TestAbruptStopLosesNothing stops ingest abruptly, several times, while a
// writer commits tens of thousands of rows: after the last restart every
// committed row is on the topic at least once, and consumers that
// de-duplicate by position see each exactly once.
func TestAbruptStopLosesNothing(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("kill")
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, v text)`)
	const total = 30000
	cfg := e.config(tbl)
	topic := cdc.Topic("public", tbl)
	r := start(t, cfg, ingest.Deps{})
	r.waitReady(t)
	w := startWriter(t, e.dsn, tbl, 0, total, 50)
	var mu sync.Mutex
	for i := 0; i < 3; i++ {
		// Stop when some but not all rows went through, at a different point each time.
		target := (i + 1) * total / 5
		e.waitEvents(topic, 60*time.Second, fmt.Sprintf("%d rows before stop %d", target, i+1), atLeast(target))
		mu.Lock()
		r.stop(t)
		r = start(t, cfg, ingest.Deps{})
		mu.Unlock()
	}
	n := w.wait(t)
	if n != total {
		t.Fatalf("writer committed %d rows, want %d", n, total)
	}
	evs := e.waitEvents(topic, 90*time.Second, fmt.Sprintf("all %d rows", n), allIDs(n))
	r.stop(t)
	d := cdc.NewDeduper()
	fresh := map[int]int{}
	dups := 0
	for _, ev := range evs {
		if ev.Env == nil {
			continue
		}
		pos, err := cdc.ParseSequence(ev.Env.Source.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Fresh(topic, 0, ev.Env.Op, pos) {
			dups++
			continue
		}
		var id int
		fmt.Sscan(num(ev.Env.After["id"]), &id)
		fresh[id]++
	}
	for id := 1; id <= n; id++ {
		if fresh[id] != 1 {
			t.Errorf("id %d seen %d times after de-duplication", id, fresh[id])
		}
	}
	t.Logf("%d rows, %d records, %d re-delivered and dropped by the deduper", n, len(evs), dups)
}

// TestInterruptedSnapshotStartsOver stops ingest in the middle of its initial
// snapshot: the next start drops the slot, snapshots again from the start and
// then streams; no row is missing.
func TestInterruptedSnapshotStartsOver(t *testing.T) {
	e := newEnv(t)
	tbl := e.table("snapint")
	const rows = 200000
	e.exec(`CREATE TABLE ` + tbl + ` (id int PRIMARY KEY, v text)`)
	e.exec(`INSERT INTO `+tbl+` SELECT g, 'pre' FROM generate_series(1, $1::int) g`, rows)
	cfg := e.config(tbl)
	topic := cdc.Topic("public", tbl)
	r := start(t, cfg, ingest.Deps{MaxBatch: 50})
	e.waitEvents(topic, 60*time.Second, "the snapshot to be under way", atLeast(1000))
	r.stop(t)
	phase := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		evs, err := readTopic(ctx, e.broker, cfg.StateTopic)
		if err != nil || len(evs) == 0 {
			return fmt.Sprintf("unreadable (%v)", err)
		}
		var rec struct{ Phase string }
		if err := json.Unmarshal(evs[len(evs)-1].Raw.Value, &rec); err != nil {
			return err.Error()
		}
		return rec.Phase
	}
	if p := phase(); p != "snapshotting" {
		t.Fatalf("state after the stop = %q, want snapshotting (the stop came too late to interrupt the snapshot)", p)
	}
	before, err := readTopic(context.Background(), e.broker, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) >= rows {
		t.Fatalf("%d records before the restart: the snapshot was not interrupted", len(before))
	}
	r = start(t, cfg, ingest.Deps{})
	r.waitReady(t)
	e.exec(`INSERT INTO ` + tbl + ` VALUES (0, 'after')`)
	evs := e.waitEvents(topic, 90*time.Second, "a full snapshot and the streamed row", func(evs []event) error {
		snap, stream := idCounts(evs)
		if stream[0] != 1 {
			return fmt.Errorf("streamed row not there yet (%d records)", len(evs))
		}
		for id := 1; id <= rows; id++ {
			if snap[id] == 0 {
				return fmt.Errorf("id %d missing", id)
			}
		}
		return nil
	})
	if p := phase(); p != "streaming" {
		t.Errorf("state after the restart = %q, want streaming", p)
	}
	if last := evs[len(evs)-2]; last.Env.Source.Snapshot != "last" {
		t.Errorf("record before the streamed row has snapshot %q, want last", last.Env.Source.Snapshot)
	}
	t.Logf("%d records before the restart, %d after", len(before), len(evs))
}
