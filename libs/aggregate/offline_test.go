package aggregate

import (
	"reflect"
	"testing"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// TestOfflineReads: AppendEntityTiles reads, in (resolution, start) order,
// exactly the tiles EntityTiles copies; DropExpired expires as Flush does
// without emitting; routed event times and re-positioned routed records
// decode to what the router made.
func TestOfflineReads(t *testing.T) {
	v := mustView(t, clicksYAML)
	e, err := New([]*featurespec.View{v}, WithPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i, m := range []int64{61, 59, 0, 64} { // 59 is within the 2m lateness after 61, 0 is late
		r := jsonRec(t, "events.clicks", int64(i), map[string]any{"user_id": "u1", "ts": t0 + m*minute, "page": "p", "dwell": i + 1})
		if err := e.Router().Route(r, func(_, value []byte) error {
			recs = append(recs, append([]byte(nil), value...))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := e.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if ts, err := RoutedEventTime(recs[0]); err != nil || ts != t0+61*minute {
		t.Fatalf("RoutedEventTime = %d, %v; want %d", ts, err, t0+61*minute)
	}
	var rp Repositioner
	moved, err := rp.Append(nil, recs[1], "elsewhere", 7, 42)
	if err != nil {
		t.Fatal(err)
	}
	var a, b routed
	if err := decodeRouted(recs[1], &a); err != nil {
		t.Fatal(err)
	}
	if err := decodeRouted(moved, &b); err != nil {
		t.Fatal(err)
	}
	if string(b.srcTopic) != "elsewhere" || b.srcPart != 7 || b.srcOffset != 42 || string(b.entity) != string(a.entity) || b.add.ts != a.add.ts {
		t.Fatalf("re-positioned record %+v, from %+v", b, a)
	}

	refs := e.AppendEntityTiles(nil, "clicks", "u1")
	copies := e.EntityTiles("clicks", "u1")
	if len(refs) != len(copies) || len(refs) < 3 {
		t.Fatalf("%d tiles read in place, %d copied", len(refs), len(copies))
	}
	byKey := map[string]*tiles.Tile{}
	for _, c := range copies {
		byKey[c.Key()] = c
	}
	for i, r := range refs {
		if i > 0 && (refs[i-1].ResolutionMs() > r.ResolutionMs() || refs[i-1].ResolutionMs() == r.ResolutionMs() && refs[i-1].StartMs() >= r.StartMs()) {
			t.Fatalf("tiles out of order at %d", i)
		}
		c := byKey[tiles.Key("clicks", "u1", r.ResolutionMs(), r.StartMs())]
		if c == nil || c.MaxEventMs != r.MaxEventMs() {
			t.Fatalf("tile %d/%d: no copy or another max event time", r.ResolutionMs(), r.StartMs())
		}
		for _, f := range v.Features {
			slot, ok := e.Slot("clicks", f.Name)
			if !ok {
				t.Fatalf("no slot for %s", f.Name)
			}
			ir, ok := r.State(slot)
			if ok != (slot.ResolutionMs == r.ResolutionMs()) {
				t.Fatalf("%s in a tile of resolution %d: %v", f.Name, r.ResolutionMs(), ok)
			}
			if ok && !reflect.DeepEqual(ir, c.Features[f.Name]) {
				t.Fatalf("%s: in place %+v, copy %+v", f.Name, ir, c.Features[f.Name])
			}
		}
	}
	if got := e.AppendEntityTiles(nil, "clicks", "nobody"); len(got) != 0 {
		t.Fatalf("tiles of an unknown entity: %d", len(got))
	}
	// A newer event moves the clock past the first 5m tiles' retention.
	if err := e.Apply(jsonRec(t, "events.clicks", 9, map[string]any{"user_id": "u1", "ts": t0 + 200*minute, "page": "p", "dwell": 1})); err != nil {
		t.Fatal(err)
	}
	before := e.C.Tiles.Load()
	e.DropExpired()
	if e.C.Expired.Load() == 0 || e.C.Tiles.Load() >= before {
		t.Fatalf("DropExpired expired %d tiles (held %d, then %d)", e.C.Expired.Load(), before, e.C.Tiles.Load())
	}
	if out, err := e.Flush(); err != nil || len(out) != 0 {
		t.Fatalf("a Flush after DropExpired emitted %d outputs (%v): DropExpired must forget changes", len(out), err)
	}
}
