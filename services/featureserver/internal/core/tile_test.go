package core

import (
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/tributary-ml/tributary/libs/tiles"
)

func compactTestTile() *tiles.Tile {
	amount := func() *tiles.IR {
		return &tiles.IR{Count: 2, NumCount: 2, Sum: 7.5, SumSq: 31.25, Min: 2.5, Max: 5, First: 2.5, FirstMs: 10, Last: 5.0, LastMs: 20}
	}
	sketch := &tiles.IR{Count: 1, Distinct: &tiles.Distinct{}}
	sketch.Distinct.Add("a")
	return &tiles.Tile{View: "v", Entity: "u1", ResolutionMs: 300_000, StartMs: 1_700_000_100_000, MaxEventMs: 1_700_000_100_020,
		Features: map[string]*tiles.IR{
			"sum_10m": amount(), "avg_10m": amount(), "max_1h": amount(),
			"count_10m":  {Count: 2, FirstMs: 10, LastMs: 20},
			"nan_a":      {Count: 1, Sum: math.NaN()},
			"nan_b":      {Count: 1, Sum: math.NaN()},
			"neg_zero":   {Count: 1, Sum: math.Copysign(0, -1)},
			"zero":       {Count: 1},
			"obj_first":  {Count: 1, First: map[string]any{"k": 1.0}, Last: map[string]any{"k": 1.0}},
			"obj_first2": {Count: 1, First: map[string]any{"k": 1.0}, Last: map[string]any{"k": 1.0}},
			"distinct":   sketch,
			"distinct2":  {Count: 1, Distinct: sketch.Distinct},
		},
		Offsets: map[string]int64{"events/0": 41},
	}
}

// TestCompactTileKeepsEveryState: a compacted tile holds exactly the
// states it was built from (Full gives them back), shares equal states
// and nothing else, and leaves its input alone.
func TestCompactTileKeepsEveryState(t *testing.T) {
	t.Parallel()
	in := compactTestTile()
	untouched := compactTestTile()
	c := NewTileCompactor()
	ct := c.Tile(in)
	for _, name := range []string{"nan_a", "nan_b"} {
		if !math.IsNaN(in.Features[name].Sum) {
			t.Fatalf("input %s: sum %v, want NaN", name, in.Features[name].Sum)
		}
		in.Features[name].Sum, untouched.Features[name].Sum = 0, 0 // the copy in ct keeps its NaN
	}
	if !reflect.DeepEqual(in, untouched) {
		t.Fatal("compacting modified its input")
	}
	want := compactTestTile()
	want.Offsets = nil
	got := ct.Full("v", "u1")
	// DeepEqual treats NaN as unequal to itself; compare those apart
	// (the two share one state in got, so check both before zeroing).
	for _, name := range []string{"nan_a", "nan_b"} {
		if !math.IsNaN(got.Features[name].Sum) {
			t.Fatalf("%s: sum %v, want NaN", name, got.Features[name].Sum)
		}
	}
	for _, name := range []string{"nan_a", "nan_b"} {
		got.Features[name].Sum, want.Features[name].Sum = 0, 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Full:\n%+v\nwant\n%+v", got, want)
	}
	if ct.Len() != len(in.Features) || len(ct.irs) != 9 {
		t.Fatalf("%d features in %d states, want %d in 9", ct.Len(), len(ct.irs), len(in.Features))
	}
	f := func(name string) *tiles.IR {
		ir, ok := ct.Feature(name)
		if !ok {
			t.Fatalf("feature %s missing", name)
		}
		return ir
	}
	if f("sum_10m") != f("avg_10m") || f("sum_10m") != f("max_1h") || f("nan_a") != f("nan_b") {
		t.Error("equal states are not shared")
	}
	for _, pair := range [][2]string{{"sum_10m", "count_10m"}, {"obj_first", "obj_first2"}, {"distinct", "distinct2"}, {"neg_zero", "zero"}} {
		if f(pair[0]) == f(pair[1]) {
			t.Errorf("%s and %s share one state, want separate ones", pair[0], pair[1])
		}
	}
	if _, ok := ct.Feature("nope"); ok {
		t.Error("an absent feature was found")
	}
}

// TestCompactTilesShareFeatureSets: tiles with the same feature names
// share one set, whatever their states; others get their own.
func TestCompactTilesShareFeatureSets(t *testing.T) {
	t.Parallel()
	c := NewTileCompactor()
	mk := func(n int64, names ...string) *Tile {
		tl := &tiles.Tile{View: "v", Entity: "e", ResolutionMs: 300_000, StartMs: n * 300_000, Features: map[string]*tiles.IR{}}
		for _, name := range names {
			tl.Features[name] = &tiles.IR{Count: n}
		}
		return c.Tile(tl)
	}
	a, b, other := mk(1, "x", "y"), mk(2, "y", "x"), mk(3, "x")
	if a.features != b.features {
		t.Error("two tiles with features {x, y} hold two sets")
	}
	if a.features == other.features {
		t.Error("{x, y} and {x} share a set")
	}
	if ir, _ := b.Feature("x"); ir.Count != 2 {
		t.Errorf("b.x count %d, want 2", ir.Count)
	}
	empty := c.Tile(&tiles.Tile{View: "v", Entity: "e"})
	if empty.Len() != 0 || empty.Full("v", "e").Features != nil {
		t.Errorf("a tile without features: %d features, Full %v", empty.Len(), empty.Full("v", "e").Features)
	}
	// Past the bound, sets are built but not kept.
	for i := range maxFeatureSets + 10 {
		mk(1, fmt.Sprint("f", i))
	}
	if len(c.sets) > maxFeatureSets {
		t.Fatalf("%d sets kept, the bound is %d", len(c.sets), maxFeatureSets)
	}
	if ir, ok := mk(4, "beyond", "bound").Feature("bound"); !ok || ir.Count != 4 {
		t.Fatal("a tile with a set past the bound lost its feature")
	}
}
