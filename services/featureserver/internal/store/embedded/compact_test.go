package embedded_test

import (
	"context"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"

	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/embedded"
)

// The index keeps tiles with features of equal state sharing one IR, and
// what it returns still equals what was written, before and after a
// restart (which decodes the log again).
func TestStoredTilesShareEqualStates(t *testing.T) {
	amount := func() *tiles.IR {
		return &tiles.IR{Count: 2, NumCount: 2, Sum: 7.5, SumSq: 31.25, Min: 2.5, Max: 5, First: 2.5, FirstMs: 10, Last: 5.0, LastMs: 20}
	}
	sketch := &tiles.IR{Count: 1, Distinct: &tiles.Distinct{}}
	sketch.Distinct.Add("a")
	in := &tiles.Tile{View: "v", Entity: "u1", ResolutionMs: 300_000, StartMs: 1_700_000_100_000, MaxEventMs: 1_700_000_100_020,
		Features: map[string]*tiles.IR{
			"sum_10m": amount(), "avg_10m": amount(), "max_1h": amount(),
			"count_10m":  {Count: 2, FirstMs: 10, LastMs: 20},
			"obj_first":  {Count: 1, First: map[string]any{"k": 1.0}, Last: map[string]any{"k": 1.0}},
			"obj_first2": {Count: 1, First: map[string]any{"k": 1.0}, Last: map[string]any{"k": 1.0}},
			"distinct":   sketch,
			"distinct2":  {Count: 1, Distinct: sketch.Distinct},
		},
		Offsets: map[string]int64{"events/0": 41},
	}
	want := cloneTile(t, in)
	want.Offsets = nil // readers ignore them; the index does not keep them
	dir := t.TempDir()
	s := open(t, dir, embedded.Options{})
	putAll(t, s, core.TileWrite{Tile: in})
	check := func(when string) {
		t.Helper()
		got, err := s.GetTiles(context.Background(), "v", "u1", nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: GetTiles = %d tiles, %v; want 1", when, len(got), err)
		}
		g := got[0].Full("v", "u1")
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("%s: stored tile\n%+v\nwant\n%+v", when, g, want)
		}
		f := g.Features
		if f["sum_10m"] != f["avg_10m"] || f["sum_10m"] != f["max_1h"] {
			t.Errorf("%s: equal states of sum_10m, avg_10m, max_1h are not shared", when)
		}
		for _, pair := range [][2]string{{"sum_10m", "count_10m"}, {"obj_first", "obj_first2"}, {"distinct", "distinct2"}} {
			if f[pair[0]] == f[pair[1]] {
				t.Errorf("%s: %s and %s share one state, want separate ones", when, pair[0], pair[1])
			}
		}
	}
	check("after the write")
	if in.Offsets = nil; !reflect.DeepEqual(in, want) {
		t.Fatal("PutTiles modified the tile it was given")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, embedded.Options{})
	defer s.Close()
	check("after reopening")
}

func cloneTile(t *testing.T, in *tiles.Tile) *tiles.Tile {
	t.Helper()
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := tiles.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkIndexHeap reports what the garbage collector has to mark for
// the tiles of one entity of the load benchmark's shape (24 features in
// 5-minute tiles, 16 in hourly ones, 8 in daily ones, the features of the
// amount column sharing a state as the featurizer keeps them) when they
// are held as decoded from the topic ("decoded") and as the store's index
// keeps them ("stored"): heap objects and scannable heap bytes per tile.
func BenchmarkIndexHeap(b *testing.B) {
	const entities = 20
	var encoded [][]byte
	for e := range entities {
		for _, res := range []struct {
			ms    int64
			n     int
			feats int
		}{{300_000, 73, 24}, {3_600_000, 169, 16}, {86_400_000, 31, 8}} {
			for i := range res.n {
				start := 1_700_006_400_000 - int64(i)*res.ms
				count := &tiles.IR{Count: 3, FirstMs: start + 1, LastMs: start + 9}
				amount := &tiles.IR{Count: 3, NumCount: 3, Sum: 31.5 + float64(i), SumSq: 400.25, Min: 2.5, Max: 20 + float64(e),
					First: 2.5, FirstMs: start + 1, Last: 9.0 + float64(i), LastMs: start + 9}
				t := &tiles.Tile{View: "wide", Entity: "user-" + strconv.Itoa(e), ResolutionMs: res.ms, StartMs: start, MaxEventMs: start + 9,
					Features: map[string]*tiles.IR{}, Offsets: map[string]int64{"events.wide/0": int64(i)}}
				for f := range res.feats {
					ir := amount
					if f%8 == 0 {
						ir = count
					}
					t.Features["f"+strconv.Itoa(f)+"_"+strconv.FormatInt(res.ms, 10)] = ir
				}
				raw, err := t.Encode()
				if err != nil {
					b.Fatal(err)
				}
				encoded = append(encoded, raw)
			}
		}
	}
	n := float64(len(encoded))
	type heap struct{ objects, scan float64 }
	measure := func() heap {
		runtime.GC()
		s := []metrics.Sample{{Name: "/gc/heap/objects:objects"}, {Name: "/gc/scan/heap:bytes"}}
		metrics.Read(s)
		return heap{float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64())}
	}
	b.Run("decoded", func(b *testing.B) {
		for b.Loop() {
			before := measure()
			held := make([]*tiles.Tile, 0, len(encoded))
			for _, raw := range encoded {
				t, err := tiles.Decode(raw)
				if err != nil {
					b.Fatal(err)
				}
				held = append(held, t)
			}
			after := measure()
			runtime.KeepAlive(held)
			b.ReportMetric((after.objects-before.objects)/n, "objects/tile")
			b.ReportMetric((after.scan-before.scan)/n, "scan-B/tile")
		}
	})
	b.Run("stored", func(b *testing.B) {
		for b.Loop() {
			s, err := embedded.Open(b.TempDir(), embedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			before := measure()
			var batch []core.TileWrite
			for i, raw := range encoded {
				t, err := tiles.Decode(raw)
				if err != nil {
					b.Fatal(err)
				}
				batch = append(batch, core.TileWrite{Tile: t})
				if len(batch) == 500 || i == len(encoded)-1 {
					if err := s.PutTiles(context.Background(), batch); err != nil {
						b.Fatal(err)
					}
					clear(batch)
					batch = batch[:0]
				}
			}
			after := measure()
			b.ReportMetric((after.objects-before.objects)/n, "objects/tile")
			b.ReportMetric((after.scan-before.scan)/n, "scan-B/tile")
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
