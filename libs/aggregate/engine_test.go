package aggregate

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/libs/tiles/tiletest"
)

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()

const minute = int64(60_000)

func mustView(t testing.TB, y string) *featurespec.View {
	t.Helper()
	v, err := featurespec.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustEngine(t testing.TB, views ...*featurespec.View) *Engine {
	t.Helper()
	e, err := New(views)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func jsonRec(t testing.TB, topic string, off int64, v map[string]any) Record {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Topic: topic, Offset: off, TimeMs: t0, Value: b}
}

// value merges the engine's tiles for entity and returns feature's value at now.
func value(t testing.TB, e *Engine, view *featurespec.View, feature, entity string, now int64) any {
	t.Helper()
	f, ok := view.Feature(feature)
	if !ok {
		t.Fatalf("no feature %s", feature)
	}
	ir, _ := tiles.Window(e.EntityTiles(view.Name, entity), f, now)
	v, ok := ir.Value(f.Aggregation)
	if !ok {
		return nil
	}
	return v
}

const clicksYAML = `
name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts, allowed_lateness: 2m}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: dwell_sum_1h, column: dwell, aggregation: sum, window: 1h}
  - {name: dwell_max_1h, column: dwell, aggregation: max, window: 1h}
  - {name: pages_1h, column: page, aggregation: approx_distinct, window: 1h}
  - {name: dwell_p50_1h, column: dwell, aggregation: p50, window: 1h}
  - {name: page, column: page, aggregation: latest}
`

func TestJSONSourceAggregatesAndLateness(t *testing.T) {
	v := mustView(t, clicksYAML)
	e := mustEngine(t, v)
	recs := []map[string]any{
		{"user_id": "u1", "ts": t0 + 1*minute, "page": "a", "dwell": 1},
		{"user_id": "u1", "ts": t0 + 2*minute, "page": "b", "dwell": 5},
		{"user_id": "u1", "ts": t0 + 9*minute, "page": "a", "dwell": 3},
		{"user_id": "u1", "ts": t0 + 8*minute, "page": "c", "dwell": 2},   // 1m late: applied
		{"user_id": "u1", "ts": t0 + 3*minute, "page": "z", "dwell": 100}, // 6m late: dropped
		{"user_id": "u2", "ts": time.UnixMilli(t0 + 4*minute).UTC().Format(time.RFC3339), "page": "a", "dwell": 7},
	}
	for i, r := range recs {
		if err := e.Apply(jsonRec(t, "events.clicks", int64(i), r)); err != nil {
			t.Fatal(err)
		}
	}
	now := t0 + 10*minute
	cases := []struct {
		feature, entity string
		want            any
	}{
		{"n_10m", "u1", 4.0},
		{"dwell_sum_1h", "u1", 11.0},
		{"dwell_max_1h", "u1", 5.0},
		{"pages_1h", "u1", 3.0},
		{"page", "u1", "a"},
		{"n_10m", "u2", 1.0},
		{"dwell_sum_1h", "u2", 7.0},
	}
	for _, c := range cases {
		if got := value(t, e, v, c.feature, c.entity, now); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s of %s = %v, want %v", c.feature, c.entity, got, c.want)
		}
	}
	if p := value(t, e, v, "dwell_p50_1h", "u1", now).(float64); math.Abs(p-2)/2 > 0.011 {
		t.Errorf("p50 of dwell = %v, want 2 within 1%%", p)
	}
	if n := e.C.Late.Load(); n != 1 {
		t.Errorf("late dropped = %d, want 1", n)
	}
	// A 10m window later decays without new events: at 10:21 it starts at 10:10.
	if got := value(t, e, v, "n_10m", "u1", t0+21*minute); got != 0.0 {
		t.Errorf("n_10m at 10:21 = %v, want 0", got)
	}
}

const txnYAML = `
name: txns
entity: {name: user, join_keys: [user_id]}
source:
  topic: cdc.public.transactions
  format: debezium
  event_time: created_at
  allowed_lateness: 5m
  filter: amount > 0
features:
  - {name: n_1h, aggregation: count, window: 1h}
  - {name: sum_1h, column: amount, aggregation: sum, window: 1h}
  - {name: max_1h, column: amount, aggregation: max, window: 1h}
  - {name: p90_1h, column: amount, aggregation: p90, window: 1h}
  - {name: last_amount, column: amount, aggregation: latest}
`

func dbz(t testing.TB, off int64, op string, before, after map[string]any, seq string) Record {
	t.Helper()
	env := map[string]any{"op": op, "before": before, "after": after, "ts_ms": t0, "source": map[string]any{"sequence": seq}}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return Record{Topic: "cdc.public.transactions", Offset: off, TimeMs: t0, Value: b}
}

func row(id int, user, amount string, atMin int64) map[string]any {
	return map[string]any{"txn_id": id, "user_id": user, "amount": amount,
		"created_at": time.UnixMilli(t0 + atMin*minute).UTC().Format(time.RFC3339Nano)}
}

func TestDebeziumRetractsUpdatesAndDeletes(t *testing.T) {
	cases := []struct {
		name    string
		ops     string
		recs    func(t testing.TB) []Record
		feature string
		want    any
	}{
		{"inserts", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "r", nil, row(2, "u", "4.50", 2), "")}
		}, "sum_1h", 15.0},
		{"update retracts before", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "u", row(1, "u", "10.50", 1), row(1, "u", "20", 1), "")}
		}, "sum_1h", 20.0},
		{"update keeps count", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "u", row(1, "u", "10.50", 1), row(1, "u", "20", 1), "")}
		}, "n_1h", 1.0},
		{"update without before adds", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "u", nil, row(1, "u", "20", 1), "")}
		}, "n_1h", 2.0},
		{"delete retracts", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "c", nil, row(2, "u", "1", 2), ""), dbz(t, 2, "d", row(1, "u", "10.50", 1), nil, "")}
		}, "sum_1h", 1.0},
		{"max is not reversible", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "c", nil, row(2, "u", "1", 2), ""), dbz(t, 2, "d", row(1, "u", "10.50", 1), nil, "")}
		}, "max_1h", 10.5},
		{"p90 is reversible", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "100", 1), ""), dbz(t, 1, "c", nil, row(2, "u", "1", 2), ""), dbz(t, 2, "d", row(1, "u", "100", 1), nil, "")}
		}, "p90_1h", "~1"},
		{"ops c only ignores updates", "[c]", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "u", row(1, "u", "10.50", 1), row(1, "u", "20", 1), "")}
		}, "sum_1h", 10.5},
		{"filter drops rows", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), ""), dbz(t, 1, "c", nil, row(2, "u", "-3", 2), "")}
		}, "n_1h", 1.0},
		{"latest", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 3), ""), dbz(t, 1, "c", nil, row(2, "u", "7", 2), "")}
		}, "last_amount", "10.50"},
		{"lsn duplicates dropped", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10.50", 1), `["10","11"]`), dbz(t, 1, "c", nil, row(1, "u", "10.50", 1), `["10","11"]`)}
		}, "n_1h", 1.0},
		{"late update corrects a held tile", "", func(t testing.TB) []Record {
			return []Record{dbz(t, 0, "c", nil, row(1, "u", "10", 1), ""), dbz(t, 1, "c", nil, row(2, "u", "1", 30), ""),
				dbz(t, 2, "u", row(1, "u", "10", 1), row(1, "u", "12", 1), "")}
		}, "sum_1h", 13.0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := txnYAML
			if c.ops != "" {
				y = strings.Replace(y, "format: debezium", "format: debezium\n  ops: "+c.ops, 1)
			}
			v := mustView(t, y)
			e := mustEngine(t, v)
			for _, r := range c.recs(t) {
				if err := e.Apply(r); err != nil {
					t.Fatal(err)
				}
			}
			got := value(t, e, v, c.feature, "u", t0+40*minute)
			if w, ok := c.want.(string); ok && strings.HasPrefix(w, "~") {
				var x float64
				fmt.Sscan(w[1:], &x)
				if g, _ := got.(float64); math.Abs(g-x) > 0.011*x {
					t.Fatalf("%s = %v, want %v within 1%%", c.feature, got, x)
				}
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("%s = %v, want %v", c.feature, got, c.want)
			}
		})
	}
}

func TestInvalidRecordsAreCountedAndSkipped(t *testing.T) {
	v := mustView(t, clicksYAML)
	cases := []struct {
		name, value, wantErr string
	}{
		{"not json", `{"user_id":`, "json record"},
		{"array", `[1,2]`, "json record"},
		{"no join key", `{"ts": 1}`, `join key "user_id" is missing`},
		{"no event time", `{"user_id":"u"}`, `event time field "ts" is missing`},
		{"bad event time", `{"user_id":"u","ts":"yesterday"}`, `not an RFC 3339 time`},
		{"object join key", `{"user_id":{"a":1},"ts":1}`, `join key "user_id"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := mustEngine(t, v)
			err := e.Apply(Record{Topic: "events.clicks", Value: []byte(c.value)})
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Apply(%s) = %v, want an error containing %q", c.value, err, c.wantErr)
			}
			if e.C.Invalid.Load() != 1 || e.C.Tiles.Load() != 0 {
				t.Fatalf("invalid=%d tiles=%d, want 1 and 0", e.C.Invalid.Load(), e.C.Tiles.Load())
			}
		})
	}
	e := mustEngine(t, v)
	if err := e.Apply(Record{Topic: "other", Value: []byte("junk")}); err != nil || e.C.Records.Load() != 0 {
		t.Fatalf("record on a topic no view reads: err %v, records %d", err, e.C.Records.Load())
	}
}

func TestExpiryEmitsTombstones(t *testing.T) {
	v := mustView(t, clicksYAML)
	e := mustEngine(t, v)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.Apply(jsonRec(t, "events.clicks", 0, map[string]any{"user_id": "old", "ts": t0, "page": "a", "dwell": 1})))
	out, err := e.Flush()
	must(err)
	if len(out) != 2 { // one 5m tile, one latest tile
		t.Fatalf("first flush: %d outputs, want 2", len(out))
	}
	// Another entity moves the view clock past 10:00 + retention (1h5m) + lateness (2m).
	must(e.Apply(jsonRec(t, "events.clicks", 1, map[string]any{"user_id": "new", "ts": t0 + 67*minute, "page": "a", "dwell": 1})))
	out, err = e.Flush()
	must(err)
	var tombs []string
	for _, o := range out {
		if o.Value == nil {
			tombs = append(tombs, string(o.Key))
		}
	}
	want := tiles.Key("clicks", "old", 5*minute, t0)
	if len(tombs) != 1 || tombs[0] != want {
		t.Fatalf("tombstones %v, want [%s]", tombs, want)
	}
	// The latest value of "old" stays.
	if got := value(t, e, v, "page", "old", t0+70*minute); got != "a" {
		t.Fatalf("latest page of old after expiry = %v, want a", got)
	}
	if n := e.C.Tiles.Load(); n != 3 {
		t.Fatalf("tiles held = %d, want 3", n)
	}
}

// TestRestoreThenReplayCountsOnce: a featurizer that emitted tiles but
// crashed before committing offsets restores them and sees the same
// records again; it must end where one that never stopped ends.
func TestRestoreThenReplayCountsOnce(t *testing.T) {
	v := mustView(t, clicksYAML)
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []Record
	for i := 0; i < 500; i++ {
		recs = append(recs, jsonRec(t, "events.clicks", int64(i), map[string]any{
			"user_id": fmt.Sprint("u", rng.IntN(5)), "ts": t0 + int64(i)*10_000 - rng.Int64N(60_000),
			"page": fmt.Sprint("p", rng.IntN(20)), "dwell": rng.IntN(100),
		}))
	}
	ref := mustEngine(t, v)
	for _, r := range recs {
		_ = ref.Apply(r)
	}
	if _, err := ref.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, 137, 300, 499} {
		crashed := mustEngine(t, v)
		for _, r := range recs[:cut] {
			_ = crashed.Apply(r)
		}
		emitted, err := crashed.Flush()
		if err != nil {
			t.Fatal(err)
		}
		restarted := mustEngine(t, v)
		for _, o := range emitted {
			if o.Value == nil {
				restarted.RestoreTombstone(0, string(o.Key))
				continue
			}
			tl, err := tiles.Decode(o.Value)
			if err != nil {
				t.Fatal(err)
			}
			restarted.Restore(0, tl)
		}
		// Offsets were committed up to some point before the cut.
		replayFrom := cut / 2
		for _, r := range recs[replayFrom:] {
			_ = restarted.Apply(r)
		}
		if _, err := restarted.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := tiletest.Diff(ref.Snapshot(), restarted.Snapshot()); err != nil {
			t.Fatalf("cut at %d, replay from %d: %v", cut, replayFrom, err)
		}
	}
}

func decodeTile(b []byte) (*tiles.Tile, error) { return tiles.Decode(b) }

// A delete on a compacted CDC topic is followed by a tombstone, a record
// with no value (ingest writes it so compaction can drop the key). It is
// expected traffic: skipped silently and counted as a tombstone, not as an
// invalid record. The router is the path both the featurizer and offline
// replays go through.
func TestTombstonesAreSkippedAndCounted(t *testing.T) {
	for _, c := range []struct {
		name, topic string
		value       []byte
	}{
		{"cdc nil value", "cdc.public.transactions", nil},
		{"cdc empty value", "cdc.public.transactions", []byte{}},
		{"json nil value", "events.clicks", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := mustEngine(t, mustView(t, txnYAML), mustView(t, clicksYAML))
			routed := 0
			err := e.Router().Route(Record{Topic: c.topic, Offset: 7, TimeMs: t0, Value: c.value}, func(_, _ []byte) error {
				routed++
				return nil
			})
			if err != nil {
				t.Errorf("route a tombstone: %v, want no error", err)
			}
			if routed != 0 {
				t.Errorf("a tombstone made %d routed changes, want none", routed)
			}
			if n := e.C.Invalid.Load(); n != 0 {
				t.Errorf("invalid = %d, want 0", n)
			}
			if n := e.C.Tombstones.Load(); n != 1 {
				t.Errorf("tombstones = %d, want 1", n)
			}
		})
	}
}

const tiesYAML = `
name: ties
entity: {name: user, join_keys: [user_id]}
source: {topic: cdc.public.transactions, format: debezium, event_time: created_at, allowed_lateness: 5m}
features:
  - {name: last_amount, column: amount, aggregation: latest}
  - {name: last_1h, column: amount, aggregation: last, window: 1h}
  - {name: first_1h, column: amount, aggregation: first, window: 1h}
`

// Rows written in one PostgreSQL transaction share now(), so their event
// times tie; their CDC events sit on the partitions of their primary keys
// and arrive in any order across them. The winner of latest, last and
// first is decided by the source position (commit LSN, then the change's
// LSN), not by arrival. Without a CDC position (JSON sources, snapshot
// rows) the partition offset decides.
func TestTiesBreakBySourcePosition(t *testing.T) {
	v := mustView(t, tiesYAML)
	at := func(rec Record, part int) Record { rec.Partition = part; return rec }
	// One transaction (commit LSN 500) inserted 10.00, 20.00, 300.00 in
	// that order; they arrive 300, 20, 10 (the auditor saw 10.00 served).
	inTx := []Record{
		at(dbz(t, 7, "c", nil, row(3, "u", "300.00", 1), `["500","430"]`), 1),
		at(dbz(t, 4, "c", nil, row(2, "u", "20.00", 1), `["500","420"]`), 0),
		at(dbz(t, 9, "c", nil, row(1, "u", "10.00", 1), `["500","410"]`), 2),
	}
	// Two transactions at the same instant: the one committed later wins
	// even though its change has the lower LSN (it started first).
	acrossTx := []Record{
		at(dbz(t, 1, "c", nil, row(5, "u", "55.00", 1), `["700","690"]`), 0),
		at(dbz(t, 1, "c", nil, row(4, "u", "44.00", 1), `["800","600"]`), 1),
		at(dbz(t, 2, "c", nil, row(6, "u", "66.00", 1), `["700","695"]`), 2),
	}
	// Snapshot rows carry no stream position: the offset decides.
	snapshot := []Record{
		at(dbz(t, 8, "r", nil, row(2, "u", "8.00", 1), `["100","100"]`), 0),
		at(dbz(t, 3, "r", nil, row(1, "u", "3.00", 1), `["100","100"]`), 1),
	}
	for _, c := range []struct {
		name              string
		recs              []Record
		wantLast, wantFst string
	}{
		{"one transaction", inTx, "300.00", "10.00"},
		{"two transactions", acrossTx, "44.00", "55.00"},
		{"snapshot rows", snapshot, "8.00", "3.00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := t0 + 2*minute
			// Every arrival order gives the same answer, also after the
			// tiles went through features.tiles (encode, decode, restore).
			for _, order := range permutations(len(c.recs)) {
				e := mustEngine(t, v)
				for _, i := range order {
					if err := e.Apply(c.recs[i]); err != nil {
						t.Fatal(err)
					}
				}
				restored := mustEngine(t, v)
				for _, tl := range e.Snapshot() {
					restored.Restore(0, tl)
				}
				for _, eng := range []*Engine{e, restored} {
					for _, f := range []struct{ name, want string }{{"last_amount", c.wantLast}, {"last_1h", c.wantLast}, {"first_1h", c.wantFst}} {
						if got := value(t, eng, v, f.name, "u", now); got != f.want {
							t.Errorf("arrival order %v: %s = %v, want %s", order, f.name, got, f.want)
						}
					}
				}
			}
		})
	}
	t.Run("json offsets", func(t *testing.T) {
		jv := mustView(t, `
name: pages
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts}
features:
  - {name: page, column: page, aggregation: latest}
`)
		recs := []Record{
			jsonRec(t, "events.clicks", 5, map[string]any{"user_id": "u", "ts": t0, "page": "a"}),
			jsonRec(t, "events.clicks", 6, map[string]any{"user_id": "u", "ts": t0, "page": "b"}),
		}
		recs[0].Partition = 1
		for _, order := range permutations(len(recs)) {
			e := mustEngine(t, jv)
			for _, i := range order {
				if err := e.Apply(recs[i]); err != nil {
					t.Fatal(err)
				}
			}
			if got := value(t, e, jv, "page", "u", t0); got != "b" {
				t.Errorf("arrival order %v: page = %v, want b (offset 6)", order, got)
			}
		}
	})
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{nil}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int(nil), p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}
