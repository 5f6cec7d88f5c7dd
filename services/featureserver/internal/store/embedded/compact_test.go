package embedded_test

import (
	"context"
	"reflect"
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
	dir := t.TempDir()
	s := open(t, dir, embedded.Options{})
	putAll(t, s, core.TileWrite{Tile: in})
	check := func(when string) {
		t.Helper()
		got, err := s.GetTiles(context.Background(), "v", "u1", nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: GetTiles = %d tiles, %v; want 1", when, len(got), err)
		}
		g := got[0]
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
	if !reflect.DeepEqual(in, want) {
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
