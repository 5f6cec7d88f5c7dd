package aggregate

import (
	"bytes"
	"testing"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles/tiletest"
)

func sampleRouted() *routed {
	return &routed{
		hasAdd: true, hasRetract: true, update: true,
		view: []byte("txns"), entity: []byte("u|1"), srcTopic: []byte("cdc.public.transactions"),
		srcPart: 3, srcOffset: 1 << 40, layout: 0xdeadbeef, hasPos: true, pos: cdc.Position{CommitLSN: 1 << 41, LSN: 1<<41 - 7},
		retract: image{ts: -5, cols: []colVal{{kind: kindNumber, text: []byte("10.50")}, {kind: kindNull}}},
		add:     image{ts: t0, cols: []colVal{{kind: kindString, text: []byte("a\x00b")}, {kind: kindTrue}, {kind: kindRaw, text: []byte(`{"x":[1]}`)}}},
	}
}

func TestRoutedRoundTrip(t *testing.T) {
	in := sampleRouted()
	b := appendRouted(nil, in)
	var out routed
	if err := decodeRouted(b, &out); err != nil {
		t.Fatal(err)
	}
	if again := appendRouted(nil, &out); !bytes.Equal(again, b) {
		t.Fatalf("re-encoded %q, want %q", again, b)
	}
	for i := 0; i < len(b); i++ {
		if err := decodeRouted(b[:i], &out); err == nil {
			t.Fatalf("a record cut at %d of %d bytes decoded", i, len(b))
		}
	}
}

// FuzzDecodeRouted: the repartition topic is outside input to the
// aggregator; decoding never panics, and what decodes re-encodes to a
// record that decodes to the same (varints may have been overlong).
func FuzzDecodeRouted(f *testing.F) {
	f.Add(appendRouted(nil, sampleRouted()))
	f.Add([]byte{1, 1, 1, 'v', 1, 'e', 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r routed
		if err := decodeRouted(b, &r); err != nil {
			return
		}
		again := appendRouted(nil, &r)
		var r2 routed
		if err := decodeRouted(again, &r2); err != nil {
			t.Fatalf("decoded %q re-encodes to %q, which does not decode: %v", b, again, err)
		}
		if third := appendRouted(nil, &r2); !bytes.Equal(third, again) {
			t.Fatalf("%q re-encodes to %q", again, third)
		}
	})
}

// routeAll routes recs with views' router and returns the routed records
// in order, each with its repartition partition among parts.
func routeAll(t testing.TB, views []*featurespec.View, recs []Record, parts int) (vals [][]byte, pos []int) {
	var c Counters
	r, err := NewRouter(views, &c)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		_ = r.Route(rec, func(key, value []byte) error {
			vals = append(vals, bytes.Clone(value))
			pos = append(pos, PartitionOfKey(key, parts))
			return nil
		})
	}
	return vals, pos
}

// TestBatchAppliesAsItsRecords: routed changes packed into batch records
// of various sizes give the tiles of the same changes applied one record
// at a time, and a batch counts its changes.
func TestBatchAppliesAsItsRecords(t *testing.T) {
	const parts = 3
	views := fraudViews(t)
	vals, pos := routeAll(t, views, benchRecords(t, 3000, 50), parts)
	single := mustEngine(t, views...)
	for i, v := range vals {
		if n, err := single.ApplyRouted(int32(pos[i]), v); err != nil || n != 1 {
			t.Fatalf("single record %d: %d changes, %v", i, n, err)
		}
	}
	for _, size := range []int{1, 7, 1000} {
		eng := mustEngine(t, views...)
		batches := make([][]byte, parts)
		counts := make([]int, parts)
		applied := 0
		flush := func(p int) {
			if counts[p] == 0 {
				return
			}
			n, err := eng.ApplyRouted(int32(p), batches[p])
			if err != nil || n != counts[p] {
				t.Fatalf("batch of %d: %d changes, %v", counts[p], n, err)
			}
			applied += n
			counts[p] = 0
		}
		for i, v := range vals {
			p := pos[i]
			if counts[p] == 0 {
				batches[p] = NewBatch(batches[p])
			}
			batches[p] = AppendBatchEntry(batches[p], v)
			if counts[p]++; counts[p] == size {
				flush(p)
			}
		}
		for p := range parts {
			flush(p)
		}
		if applied != len(vals) {
			t.Fatalf("batches of %d: %d changes applied, want %d", size, applied, len(vals))
		}
		want := single.Snapshot()
		if len(want) == 0 {
			t.Fatal("no tiles")
		}
		if err := tiletest.Diff(want, eng.Snapshot()); err != nil {
			t.Fatalf("batches of %d: %v", size, err)
		}
	}
}

// FuzzApplyRoutedBatch: a batch record is outside input too; applying one
// never panics, and a malformed one is counted invalid, not applied in part
// beyond its last well-framed change.
func FuzzApplyRoutedBatch(f *testing.F) {
	views := []*featurespec.View{mustView(f, clicksYAML)}
	vals, _ := routeAll(f, views, []Record{
		{Topic: "events.clicks", Value: []byte(`{"user_id":"u","ts":"2026-11-02T10:00:00Z","page":"a","dwell":3}`)},
		{Topic: "events.clicks", Offset: 1, Value: []byte(`{"user_id":"v","ts":"2026-11-02T10:00:01Z","page":"b","dwell":4}`)},
	}, 1)
	b := NewBatch(nil)
	for _, v := range vals {
		b = AppendBatchEntry(b, v)
	}
	f.Add(b)
	f.Add([]byte{routedBatchVersion, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := New(views)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = e.ApplyRouted(0, b)
		if _, err := e.Flush(); err != nil {
			t.Fatalf("flush after %q: %v", b, err)
		}
	})
}
