// Package storetest is the conformance suite every core.TileStore adapter
// passes: the embedded store and the ScyllaDB adapter run the same tests.
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// Opener prepares fresh, empty storage for one test and returns a function
// that opens a store on it; calling that again after Close must open the
// same stored data (a restart).
type Opener func(t *testing.T) (open func() core.TileStore)

// Run runs the conformance suite.
func Run(t *testing.T, opener Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func() core.TileStore)
	}{
		{"EmptyEntity", testEmpty},
		{"RoundTrip", testRoundTrip},
		{"OrderedByResolutionThenStart", testOrder},
		{"SameKeyReplaces", testReplace},
		{"BatchTwiceIsIdempotent", testIdempotent},
		{"ViewsAndEntitiesApart", testIsolation},
		{"ExpiredNotReturned", testExpiry},
		{"AppendsToDst", testAppend},
		{"SurvivesRestart", testRestart},
		{"ConcurrentReadsAndWrites", testConcurrent},
		{"StableTiles", testStableTiles},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := opener(t)
			tc.fn(t, open)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func closeStore(t *testing.T, s core.TileStore) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// Tile builds a tile whose feature state is derived from n, so two tiles
// built with different n differ in every field.
func Tile(view, entity string, resMs, startMs int64, n int) *tiles.Tile {
	ir := &tiles.IR{Count: int64(n), NumCount: int64(n), Sum: float64(n) * 1.5, SumSq: float64(n) * 2.25, Min: -float64(n), Max: float64(n) + 0.25}
	if n > 0 {
		ir.First, ir.FirstMs, ir.FirstPos = fmt.Sprintf("first-%d", n), startMs+1, tiles.Pos{uint64(n) << 33, uint64(n)}
		ir.Last, ir.LastMs, ir.LastPos = float64(n)+0.5, startMs+2, tiles.Pos{0, uint64(n) + 7}
	}
	flag := &tiles.IR{Count: 1, Last: n%2 == 0, LastMs: startMs + 3}
	return &tiles.Tile{View: view, Entity: entity, ResolutionMs: resMs, StartMs: startMs, MaxEventMs: startMs + 3 + int64(n),
		Features: map[string]*tiles.IR{"amount": ir, "flag": flag}}
}

func put(t *testing.T, s core.TileStore, ws ...core.TileWrite) {
	t.Helper()
	if err := s.PutTiles(ctx(t), ws); err != nil {
		t.Fatalf("put %d tiles: %v", len(ws), err)
	}
}

// getStored returns the stored tiles of (view, entity).
func getStored(t *testing.T, s core.TileStore, view, entity string) []*core.Tile {
	t.Helper()
	ts, err := s.GetTiles(ctx(t), view, entity, nil)
	if err != nil {
		t.Fatalf("get %s/%s: %v", view, entity, err)
	}
	return ts
}

// get returns the tiles of (view, entity) as the tiles they were built from.
func get(t *testing.T, s core.TileStore, view, entity string) []*tiles.Tile {
	t.Helper()
	return full(getStored(t, s, view, entity), view, entity)
}

func full(ts []*core.Tile, view, entity string) []*tiles.Tile {
	out := make([]*tiles.Tile, len(ts))
	for i, t := range ts {
		out[i] = t.Full(view, entity)
	}
	return out
}

func live(tl *tiles.Tile) core.TileWrite {
	return core.TileWrite{Tile: tl, ExpiresMs: time.Now().Add(time.Hour).UnixMilli()}
}

func forever(tl *tiles.Tile) core.TileWrite { return core.TileWrite{Tile: tl} }

func sameTiles(t *testing.T, what string, got, want []*tiles.Tile) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d tiles %v, want %d %v", what, len(got), keys(got), len(want), keys(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: tile %d:\n got %s %+v\nwant %s %+v", what, i, got[i].Key(), dump(got[i]), want[i].Key(), dump(want[i]))
		}
	}
}

func keys(ts []*tiles.Tile) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Key()
	}
	return out
}

func dump(t *tiles.Tile) string {
	b, _ := t.Encode()
	return string(b)
}

func testEmpty(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	if got := get(t, s, "v", "nobody"); len(got) != 0 {
		t.Fatalf("unknown entity: got %v, want none", keys(got))
	}
	put(t, s)
}

func testRoundTrip(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	latest := Tile("v", "u1", 0, 0, 7)
	win := Tile("v", "u1", 300_000, 1_700_000_100_000, 3)
	put(t, s, forever(latest), live(win))
	sameTiles(t, "round trip", get(t, s, "v", "u1"), []*tiles.Tile{latest, win})
}

func testOrder(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	base := int64(1_700_006_400_000) // a multiple of a day
	want := []*tiles.Tile{
		Tile("v", "u", 0, 0, 1),
		Tile("v", "u", 300_000, base, 2),
		Tile("v", "u", 300_000, base+300_000, 3),
		Tile("v", "u", 300_000, base+600_000, 4),
		Tile("v", "u", 3_600_000, base-3_600_000, 5),
		Tile("v", "u", 3_600_000, base, 6),
		Tile("v", "u", 86_400_000, base, 7),
	}
	order := []int{5, 2, 6, 0, 3, 1, 4}
	for _, i := range order {
		put(t, s, live(want[i]))
	}
	sameTiles(t, "ordered", get(t, s, "v", "u"), want)
}

func testReplace(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	old := Tile("v", "u", 300_000, 1_700_000_100_000, 1)
	other := Tile("v", "u", 300_000, 1_700_000_400_000, 2)
	put(t, s, live(old), live(other))
	repl := Tile("v", "u", 300_000, 1_700_000_100_000, 9)
	put(t, s, live(repl))
	sameTiles(t, "replaced", get(t, s, "v", "u"), []*tiles.Tile{repl, other})
	// Within one batch the later write of a key wins.
	last := Tile("v", "u", 300_000, 1_700_000_100_000, 11)
	put(t, s, live(Tile("v", "u", 300_000, 1_700_000_100_000, 10)), live(last))
	sameTiles(t, "replaced within batch", get(t, s, "v", "u"), []*tiles.Tile{last, other})
}

func testIdempotent(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	var batch []core.TileWrite
	var want []*tiles.Tile
	for i := range 20 {
		tl := Tile("v", "u", 300_000, 1_700_000_100_000+int64(i)*300_000, i+1)
		batch = append(batch, live(tl))
		want = append(want, tl)
	}
	put(t, s, batch...)
	put(t, s, batch...)
	sameTiles(t, "batch written twice", get(t, s, "v", "u"), want)
}

func testIsolation(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	a := Tile("v", "u1", 0, 0, 1)
	b := Tile("v", "u10", 0, 0, 2)
	c := Tile("w", "u1", 0, 0, 3)
	d := Tile("v", "u1,x", 0, 0, 4)
	put(t, s, forever(a), forever(b), forever(c), forever(d))
	sameTiles(t, "v/u1", get(t, s, "v", "u1"), []*tiles.Tile{a})
	sameTiles(t, "v/u10", get(t, s, "v", "u10"), []*tiles.Tile{b})
	sameTiles(t, "w/u1", get(t, s, "w", "u1"), []*tiles.Tile{c})
	sameTiles(t, "v/u1,x", get(t, s, "v", "u1,x"), []*tiles.Tile{d})
	sameTiles(t, "w/u10", get(t, s, "w", "u10"), nil)
}

func testExpiry(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	now := time.Now()
	gone := Tile("v", "u", 300_000, 1_700_000_100_000, 1)
	kept := Tile("v", "u", 300_000, 1_700_000_400_000, 2)
	put(t, s,
		core.TileWrite{Tile: gone, ExpiresMs: now.Add(-time.Hour).UnixMilli()},
		core.TileWrite{Tile: kept, ExpiresMs: now.Add(time.Hour).UnixMilli()})
	sameTiles(t, "expired dropped", get(t, s, "v", "u"), []*tiles.Tile{kept})
	put(t, s, core.TileWrite{Tile: Tile("v", "dead", 300_000, 1_700_000_100_000, 1), ExpiresMs: now.Add(-time.Minute).UnixMilli()})
	sameTiles(t, "entity with only expired tiles", get(t, s, "v", "dead"), nil)
}

func testAppend(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	a := Tile("v", "u", 0, 0, 1)
	put(t, s, forever(a))
	prefix := core.NewTileCompactor().Tile(Tile("other", "x", 0, 0, 5))
	dst := make([]*core.Tile, 1, 8)
	dst[0] = prefix
	got, err := s.GetTiles(ctx(t), "v", "u", dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != prefix {
		t.Fatalf("appended: %d tiles, the first kept: %v; want the prefix and one tile", len(got), len(got) > 0 && got[0] == prefix)
	}
	sameTiles(t, "appended", full(got[1:], "v", "u"), []*tiles.Tile{a})
}

func testRestart(t *testing.T, open func() core.TileStore) {
	s := open()
	var want []*tiles.Tile
	var batch []core.TileWrite
	for e := range 10 {
		for i := range 3 {
			tl := Tile("v", fmt.Sprintf("u%d", e), 300_000, 1_700_000_100_000+int64(i)*300_000, e*3+i+1)
			batch = append(batch, live(tl))
			if e == 4 {
				want = append(want, tl)
			}
		}
	}
	put(t, s, batch...)
	repl := Tile("v", "u4", 300_000, 1_700_000_100_000, 99)
	put(t, s, live(repl))
	want[0] = repl
	closeStore(t, s)

	s = open()
	defer closeStore(t, s)
	sameTiles(t, "after restart", get(t, s, "v", "u4"), want)
	if got := get(t, s, "v", "u9"); len(got) != 3 {
		t.Fatalf("after restart u9 has %d tiles, want 3", len(got))
	}
}

func testConcurrent(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	const writers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				tl := Tile("v", fmt.Sprintf("w%d", w), 300_000, 1_700_000_100_000+int64(r%5)*300_000, r+1)
				if err := s.PutTiles(context.Background(), []core.TileWrite{live(tl)}); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for range rounds {
				ts, err := s.GetTiles(context.Background(), "v", fmt.Sprintf("w%d", w), nil)
				if err != nil {
					errs <- err
					return
				}
				for i := 1; i < len(ts); i++ {
					if ts[i-1].StartMs >= ts[i].StartMs {
						errs <- fmt.Errorf("unordered tiles %v", keys(full(ts, "v", fmt.Sprintf("w%d", w))))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		got := get(t, s, "v", fmt.Sprintf("w%d", w))
		if len(got) != 5 {
			t.Fatalf("writer %d: %d tiles, want 5", w, len(got))
		}
		// The last round wrote start r%5 = 4 with n = rounds.
		if got[4].Features["amount"].Count != rounds {
			t.Fatalf("writer %d: newest tile count %d, want %d", w, got[4].Features["amount"].Count, rounds)
		}
	}
}

// testStableTiles holds a store that says its tiles are stable
// (core.StableTiles) to it: an unchanged tile read again is the same
// object, a rewritten one (a late event that moved no event time) is a new
// object with the new state, and an object returned before never changes.
func testStableTiles(t *testing.T, open func() core.TileStore) {
	s := open()
	defer closeStore(t, s)
	if st, ok := s.(core.StableTiles); !ok || !st.StableTiles() {
		t.Skip("the store does not promise stable tiles")
	}
	base := int64(1_700_006_400_000)
	a, b := Tile("v", "u", 300_000, base, 1), Tile("v", "u", 300_000, base+300_000, 2)
	put(t, s, live(a), live(b))
	first := getStored(t, s, "v", "u")
	second := getStored(t, s, "v", "u")
	if len(first) != 2 || len(second) != 2 {
		t.Fatalf("got %d and %d tiles, want 2", len(first), len(second))
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("unchanged tile %d read twice: two objects", i)
		}
	}
	before := dump(first[0].Full("v", "u"))
	late := Tile("v", "u", 300_000, base, 1)
	late.Features["amount"].Sum += 4
	late.Features["amount"].Count++
	put(t, s, live(late))
	third := getStored(t, s, "v", "u")
	sameTiles(t, "after the late event", full(third, "v", "u"), []*tiles.Tile{late, b})
	if third[0] == first[0] {
		t.Fatalf("rewritten tile %s returned as the object read before", late.Key())
	}
	if third[1] != first[1] {
		t.Fatalf("untouched tile %s: a new object after its neighbour was rewritten", b.Key())
	}
	if after := dump(first[0].Full("v", "u")); after != before {
		t.Fatalf("a tile returned before changed after the rewrite:\n before %s\n after  %s", before, after)
	}
}

// BenchmarkGetTiles measures reading one entity of 200 five-minute tiles
// from s (written first), the read every feature request makes per
// entity and view.
func BenchmarkGetTiles(b *testing.B, s core.TileStore) {
	var ws []core.TileWrite
	for i := range 200 {
		ws = append(ws, core.TileWrite{Tile: Tile("v", "u", 300_000, 1_700_000_100_000+int64(i)*300_000, i+1)})
	}
	if err := s.PutTiles(context.Background(), ws); err != nil {
		b.Fatal(err)
	}
	dst := make([]*core.Tile, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = s.GetTiles(context.Background(), "v", "u", dst[:0]); err != nil || len(dst) != 200 {
			b.Fatalf("%d tiles, %v", len(dst), err)
		}
	}
}
