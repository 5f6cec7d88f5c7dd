package core_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const txnView = `
name: txns
entity: {name: user, join_keys: [user_id]}
source: {topic: cdc.public.transactions, format: debezium, event_time: created_at}
max_age: 1h
features:
  - {name: count_10m, aggregation: count, window: 10m}
  - {name: sum_1h, column: amount, aggregation: sum, window: 1h}
  - {name: avg_24h, column: amount, aggregation: avg, window: 24h}
  - {name: max_24h, column: amount, aggregation: max, window: 24h}
  - {name: min_7d, column: amount, aggregation: min, window: 7d}
  - {name: stddev_1h, column: amount, aggregation: stddev, window: 1h}
  - {name: last_amount, column: amount, aggregation: latest}
  - {name: first_1h, column: merchant, aggregation: first, window: 1h}
`

const pairView = `
name: pairs
entity: {name: user_merchant, join_keys: [user_id, merchant_id]}
source: {topic: events.pairs}
features:
  - {name: count_1h, aggregation: count, window: 1h}
`

func parse(t testing.TB, docs ...string) []*featurespec.View {
	t.Helper()
	var out []*featurespec.View
	for i, d := range docs {
		v, err := featurespec.Parse(fmt.Sprintf("view%d.yaml", i), []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

type event struct {
	ts       int64
	amount   float64
	merchant string
}

// buildTiles computes the tiles of events the way the featurizer does:
// one IR per feature in the tile of the feature's resolution.
func buildTiles(v *featurespec.View, entity string, evs []event) []*tiles.Tile {
	byKey := map[string]*tiles.Tile{}
	for _, e := range evs {
		for _, f := range v.Features {
			res := tiles.ResolutionOf(f)
			start := tiles.StartOf(e.ts, res)
			key := tiles.Key(v.Name, entity, res.Milliseconds(), start)
			tl := byKey[key]
			if tl == nil {
				tl = &tiles.Tile{View: v.Name, Entity: entity, ResolutionMs: res.Milliseconds(), StartMs: start, Features: map[string]*tiles.IR{}}
				byKey[key] = tl
			}
			tl.MaxEventMs = max(tl.MaxEventMs, e.ts)
			ir := tl.Features[f.Name]
			if ir == nil {
				ir = &tiles.IR{}
				tl.Features[f.Name] = ir
			}
			var val any = e.amount
			if f.Column == "merchant" {
				val = e.merchant
			}
			ir.Add(val, e.ts)
		}
	}
	out := make([]*tiles.Tile, 0, len(byKey))
	for _, tl := range byKey {
		out = append(out, tl)
	}
	return out
}

// bruteForce computes a feature straight from the events in its sawtooth
// window at now.
func bruteForce(f featurespec.Feature, evs []event, now int64) (any, int64, bool) {
	res := tiles.ResolutionOf(f)
	from := tiles.StartOf(now-time.Duration(f.Window).Milliseconds(), res)
	var in []event
	for _, e := range evs {
		if f.Aggregation == featurespec.AggLatest || (e.ts >= from && e.ts <= now) {
			in = append(in, e)
		}
	}
	var newest int64
	for _, e := range in {
		newest = max(newest, e.ts)
	}
	switch f.Aggregation {
	case featurespec.AggCount:
		return float64(len(in)), newest, true
	case featurespec.AggSum:
		s := 0.0
		for _, e := range in {
			s += e.amount
		}
		return s, newest, true
	case featurespec.AggAvg, featurespec.AggStddev:
		if len(in) == 0 {
			return nil, 0, false
		}
		s, sq := 0.0, 0.0
		for _, e := range in {
			s += e.amount
			sq += e.amount * e.amount
		}
		n := float64(len(in))
		if f.Aggregation == featurespec.AggAvg {
			return s / n, newest, true
		}
		return math.Sqrt(math.Max(0, sq/n-(s/n)*(s/n))), newest, true
	case featurespec.AggMax, featurespec.AggMin:
		if len(in) == 0 {
			return nil, 0, false
		}
		m := in[0].amount
		for _, e := range in {
			if f.Aggregation == featurespec.AggMax {
				m = math.Max(m, e.amount)
			} else {
				m = math.Min(m, e.amount)
			}
		}
		return m, newest, true
	case featurespec.AggLatest:
		if len(in) == 0 {
			return nil, 0, false
		}
		last := in[0]
		for _, e := range in {
			if e.ts >= last.ts {
				last = e
			}
		}
		return last.amount, newest, true
	case featurespec.AggFirst:
		if len(in) == 0 {
			return nil, 0, false
		}
		first := in[0]
		for _, e := range in {
			if e.ts < first.ts {
				first = e
			}
		}
		return first.merchant, newest, true
	}
	panic("unhandled aggregation " + f.Aggregation)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

type fixture struct {
	store  *embedded.Store
	online *core.Online
	clock  *clock
	views  []*featurespec.View
}

func newFixture(t testing.TB, limits core.Limits, docs ...string) *fixture {
	t.Helper()
	clk := &clock{now: time.UnixMilli(1_700_000_000_000)}
	st, err := embedded.Open(t.TempDir(), embedded.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	views := parse(t, docs...)
	on, err := core.NewOnline(st, core.NewCatalog(views), clk.Now, limits)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: st, online: on, clock: clk, views: views}
}

func (fx *fixture) put(t testing.TB, v *featurespec.View, ts ...*tiles.Tile) {
	t.Helper()
	ws := make([]core.TileWrite, len(ts))
	for i, tl := range ts {
		ws[i] = core.TileWrite{Tile: tl, ExpiresMs: core.ExpiryOf(v, tl)}
	}
	if err := fx.store.PutTiles(context.Background(), ws); err != nil {
		t.Fatal(err)
	}
}

func refsOf(v *featurespec.View) []string {
	var refs []string
	for _, f := range v.Features {
		refs = append(refs, v.Ref(f))
	}
	return refs
}

func user(id string) map[string]string { return map[string]string{"user_id": id} }

// TestWindowsMatchBruteForce checks served values against a recomputation
// from the raw events, for random event streams and request times.
func TestWindowsMatchBruteForce(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	v := fx.views[0]
	rng := rand.New(rand.NewPCG(1, 2))
	base := fx.clock.Now().UnixMilli()
	for round := range 30 {
		entity := fmt.Sprintf("u%d", round)
		var evs []event
		for range 1 + rng.IntN(60) {
			evs = append(evs, event{
				ts:       base - rng.Int64N(8*24*3_600_000),
				amount:   math.Round(rng.Float64()*10000) / 100,
				merchant: fmt.Sprintf("m%d", rng.IntN(5)),
			})
		}
		// The store drops tiles already expired when written: write them
		// as of base.
		fx.clock.Set(time.UnixMilli(base))
		fx.put(t, v, buildTiles(v, entity, evs)...)
		// Ask at several times after the newest event: windows decay.
		for _, ahead := range []int64{0, 1, 299_999, 300_000, 610_000, 3_600_000, 86_400_000} {
			now := base + ahead
			fx.clock.Set(time.UnixMilli(now))
			res, err := fx.online.Get(context.Background(), refsOf(v), core.MapRows{user(entity)})
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range v.Features {
				got := res.Values[i]
				want, newest, ok := bruteForce(f, evs, now)
				if !ok {
					if got.Status != core.StatusNotFound {
						t.Fatalf("round %d +%dms %s: status %d value %+v, want NOT_FOUND", round, ahead, f.Name, got.Status, got)
					}
					continue
				}
				var gv any
				switch got.Kind {
				case core.KindDouble:
					gv = got.Double
				case core.KindString:
					gv = got.Str
				default:
					t.Fatalf("round %d %s: kind %d", round, f.Name, got.Kind)
				}
				if w, isF := want.(float64); isF {
					if math.Abs(gv.(float64)-w) > 1e-6*math.Max(1, math.Abs(w)) {
						t.Fatalf("round %d +%dms %s: got %v, want %v", round, ahead, f.Name, gv, w)
					}
				} else if gv != want {
					t.Fatalf("round %d +%dms %s: got %v, want %v", round, ahead, f.Name, gv, want)
				}
				if newest > 0 && got.EventMs != newest {
					// Tiles carry the newest event of any feature, so the
					// served event time may be newer, never older.
					if got.EventMs < newest {
						t.Fatalf("round %d %s: event time %d older than newest contributing event %d", round, f.Name, got.EventMs, newest)
					}
				}
			}
			res.Release()
		}
	}
}

func TestStatusAndEventTime(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	evs := []event{{ts: now - 120_000, amount: 10, merchant: "a"}, {ts: now - 60_000, amount: 30, merchant: "b"}}
	fx.put(t, v, buildTiles(v, "u1", evs)...)

	get := func() []core.Value {
		t.Helper()
		res, err := fx.online.Get(context.Background(), []string{"txns:count_10m", "txns:avg_24h", "txns:last_amount", "txns:first_1h"}, core.MapRows{user("u1"), user("nobody")})
		if err != nil {
			t.Fatal(err)
		}
		out := append([]core.Value(nil), res.Values...)
		res.Release()
		return out
	}
	vals := get()
	want := []core.Value{
		{Kind: core.KindDouble, Double: 2, Status: core.StatusPresent, EventMs: now - 60_000},
		{Kind: core.KindDouble, Double: 20, Status: core.StatusPresent, EventMs: now - 60_000},
		{Kind: core.KindDouble, Double: 30, Status: core.StatusPresent, EventMs: now - 60_000},
		{Kind: core.KindString, Str: "a", Status: core.StatusPresent, EventMs: now - 60_000},
		{Status: core.StatusNotFound}, {Status: core.StatusNotFound}, {Status: core.StatusNotFound}, {Status: core.StatusNotFound},
	}
	for i := range want {
		if vals[i] != want[i] {
			t.Errorf("value %d: got %+v, want %+v", i, vals[i], want[i])
		}
	}

	// 20 minutes on the 10m count has decayed to 0: still PRESENT, as of
	// the newest event known for the user.
	fx.clock.Set(time.UnixMilli(now + 20*60_000))
	vals = get()
	if w := (core.Value{Kind: core.KindDouble, Double: 0, Status: core.StatusPresent, EventMs: now - 60_000}); vals[0] != w {
		t.Errorf("decayed count: got %+v, want %+v", vals[0], w)
	}

	// Past the view's max_age (1h) everything is STALE but still served.
	fx.clock.Set(time.UnixMilli(now + 2*3_600_000))
	vals = get()
	for i, f := range []string{"count_10m", "avg_24h", "last_amount"} {
		if vals[i].Status != core.StatusStale {
			t.Errorf("%s two hours later: status %d, want STALE", f, vals[i].Status)
		}
	}
	if vals[2].Double != 30 {
		t.Errorf("stale latest value: %v, want 30", vals[2].Double)
	}
	// first_1h has nothing in its window: no value at all.
	if vals[3].Status != core.StatusNotFound {
		t.Errorf("first_1h two hours later: %+v, want NOT_FOUND", vals[3])
	}
}

func TestCompositeJoinKeys(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), pairView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	id := tiles.EntityID([]string{"u1", "m9"})
	fx.put(t, v, buildTiles(v, id, []event{{ts: now - 1000}, {ts: now - 2000}, {ts: now - 3000}})...)
	res, err := fx.online.Get(context.Background(), []string{"pairs:count_1h"}, core.MapRows{
		{"user_id": "u1", "merchant_id": "m9"},
		{"merchant_id": "m9", "user_id": "u2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	if res.Values[0].Double != 3 || res.Values[0].Status != core.StatusPresent {
		t.Errorf("u1,m9: %+v, want count 3", res.Values[0])
	}
	if res.Values[1].Status != core.StatusNotFound {
		t.Errorf("u2,m9: %+v, want NOT_FOUND", res.Values[1])
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	limits := core.DefaultLimits()
	limits.MaxRows, limits.MaxFeatures, limits.MaxValues = 3, 4, 6
	fx := newFixture(t, limits, txnView, pairView)
	rows := func(n int) core.MapRows {
		out := make(core.MapRows, n)
		for i := range out {
			out[i] = user(fmt.Sprint(i))
		}
		return out
	}
	tests := []struct {
		name  string
		refs  []string
		rows  core.MapRows
		field string
		msg   string
	}{
		{"no features", nil, rows(1), "features", "at least one"},
		{"no rows", []string{"txns:count_10m"}, nil, "entities", "at least one"},
		{"too many features", []string{"txns:count_10m", "txns:count_10m", "txns:count_10m", "txns:count_10m", "txns:count_10m"}, rows(1), "features", "limit is 4"},
		{"too many rows", []string{"txns:count_10m"}, rows(4), "entities", "limit is 3"},
		{"too many values", []string{"txns:count_10m", "txns:sum_1h", "txns:avg_24h"}, rows(3), "entities", "9 values, the limit is 6"},
		{"not a ref", []string{"txns:count_10m", "count_10m"}, rows(1), "features[1]", "not of the form view:feature"},
		{"empty feature", []string{"txns:"}, rows(1), "features[0]", "not of the form"},
		{"unknown view", []string{"nope:count_10m"}, rows(1), "features[0]", `unknown feature view "nope"`},
		{"unknown feature", []string{"txns:count_99m"}, rows(1), "features[0]", `feature view "txns" has no feature "count_99m"`},
		{"missing join key", []string{"txns:count_10m"}, core.MapRows{user("a"), {"userid": "b"}}, "entities[1]", `missing join key "user_id" of feature view "txns"`},
		{"empty join key", []string{"txns:count_10m"}, core.MapRows{user("")}, "entities[0]", `missing join key "user_id"`},
		{"missing second join key", []string{"pairs:count_1h"}, core.MapRows{user("a")}, "entities[0]", `missing join key "merchant_id" of feature view "pairs"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fx.online.Get(context.Background(), tc.refs, tc.rows)
			var re *core.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a RequestError", err)
			}
			if re.Field != tc.field || !strings.Contains(re.Msg, tc.msg) {
				t.Fatalf("err = %q, want field %q and a message containing %q", err, tc.field, tc.msg)
			}
		})
	}
}

func TestContextEndedIsReported(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := fx.online.Get(ctx, []string{"txns:count_10m"}, core.MapRows{user("u")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired deadline: err = %v, want DeadlineExceeded", err)
	}
}

// gate holds every read until released, to fill the server with requests.
type gate struct {
	core.TileStore
	entered chan struct{}
	release chan struct{}
}

func (g *gate) GetTiles(ctx context.Context, view, entity string, dst []*core.Tile) ([]*core.Tile, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return dst, ctx.Err()
	}
	return g.TileStore.GetTiles(ctx, view, entity, dst)
}

func TestOverloadIsRefusedAndDeadlinesHonoured(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	g := &gate{TileStore: fx.store, entered: make(chan struct{}, 4), release: make(chan struct{})}
	limits := core.DefaultLimits()
	limits.MaxInFlight = 2
	on, err := core.NewOnline(g, core.NewCatalog(fx.views), fx.clock.Now, limits)
	if err != nil {
		t.Fatal(err)
	}
	refs, rows := []string{"txns:count_10m"}, core.MapRows{user("u")}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			res, err := on.Get(context.Background(), refs, rows)
			if err == nil {
				res.Release()
			}
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-g.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("two requests did not reach the store within 10s")
		}
	}
	if _, err := on.Get(context.Background(), refs, rows); !errors.Is(err, core.ErrOverloaded) {
		t.Fatalf("third concurrent request: err = %v, want ErrOverloaded", err)
	}
	close(g.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("held request: %v", err)
		}
	}

	// A read that blocks past the caller's deadline ends with it.
	blocked := &gate{TileStore: fx.store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	on, err = core.NewOnline(blocked, core.NewCatalog(fx.views), fx.clock.Now, limits)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := on.Get(ctx, refs, rows); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read past the deadline: err = %v, want DeadlineExceeded", err)
	}
}

// TestConcurrentFetchAgreesWithSerial reads 100 entities with one read per
// goroutine and with all reads on one goroutine.
func TestConcurrentFetchAgreesWithSerial(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	var rows core.MapRows
	for i := range 100 {
		id := fmt.Sprintf("u%d", i)
		var evs []event
		for j := range i % 7 {
			evs = append(evs, event{ts: now - int64(j)*90_000, amount: float64(i + j)})
		}
		fx.put(t, v, buildTiles(v, id, evs)...)
		rows = append(rows, user(id))
	}
	serial := core.DefaultLimits()
	serial.FetchParallelism = 1
	wide := core.DefaultLimits()
	wide.FetchParallelism, wide.FetchChunk = 16, 1
	var results [][]core.Value
	for _, l := range []core.Limits{serial, wide} {
		on, err := core.NewOnline(fx.store, core.NewCatalog(fx.views), fx.clock.Now, l)
		if err != nil {
			t.Fatal(err)
		}
		res, err := on.Get(context.Background(), refsOf(v), rows)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, append([]core.Value(nil), res.Values...))
		res.Release()
	}
	for i := range results[0] {
		if results[0][i] != results[1][i] {
			t.Fatalf("value %d: serial %+v, concurrent %+v", i, results[0][i], results[1][i])
		}
	}
	// Entity u8 has 8%7 = 1 event, just now.
	if got := results[1][8*len(v.Features)]; got.Double != 1 || got.Status != core.StatusPresent {
		t.Fatalf("u8 count_10m: %+v, want 1", got)
	}
}

func TestExpiryOf(t *testing.T) {
	t.Parallel()
	v := parse(t, txnView)[0]
	tl := &tiles.Tile{View: "txns", Entity: "u", ResolutionMs: 300_000, StartMs: 1_700_000_100_000}
	// 5m tiles serve windows up to 1h here: readable until start + 5m + 1h.
	if got, want := core.ExpiryOf(v, tl), tl.StartMs+300_000+3_600_000; got != want {
		t.Errorf("5m tile: expiry %d, want %d", got, want)
	}
	if got := core.ExpiryOf(v, &tiles.Tile{View: "txns", Entity: "u"}); got != 0 {
		t.Errorf("latest tile: expiry %d, want 0 (never)", got)
	}
	if got, want := core.ExpiryOf(nil, tl), tl.StartMs+300_000+366*86_400_000; got != want {
		t.Errorf("unknown view: expiry %d, want %d", got, want)
	}
}

// TestRewrittenTileInvalidatesCachedWindow rewrites an old tile of a long
// window (a late event) after the window was read and cached.
func TestRewrittenTileInvalidatesCachedWindow(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	var evs []event
	for h := range 48 {
		evs = append(evs, event{ts: now - int64(h)*3_600_000, amount: 1})
	}
	fx.put(t, v, buildTiles(v, "u", evs)...)
	read := func() float64 {
		t.Helper()
		res, err := fx.online.Get(context.Background(), []string{"txns:min_7d", "txns:avg_24h"}, core.MapRows{user("u")})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Release()
		return res.Values[0].Double
	}
	for range 3 {
		if got := read(); got != 1 {
			t.Fatalf("min_7d = %v, want 1", got)
		}
	}
	// A late event 30 hours ago with a smaller amount rewrites that tile.
	evs = append(evs, event{ts: now - 30*3_600_000 + 1, amount: -5})
	var late []*tiles.Tile
	for _, tl := range buildTiles(v, "u", evs) {
		if tl.ResolutionMs == 3_600_000 && tl.StartMs == tiles.StartOf(now-30*3_600_000+1, time.Hour) {
			late = append(late, tl)
		}
	}
	if len(late) != 1 {
		t.Fatalf("%d rewritten tiles, want 1", len(late))
	}
	fx.put(t, v, late...)
	if got := read(); got != -5 {
		t.Fatalf("min_7d after the late event = %v, want -5", got)
	}
}

const sketchView = `
name: sketchy
entity: {name: user, join_keys: [user_id]}
source: {topic: events.sketchy}
features:
  - {name: count_7d, aggregation: count, window: 7d}
  - {name: p50_7d, column: amount, aggregation: p50, window: 7d}
  - {name: avg_7d, column: amount, aggregation: avg, window: 7d}
  - {name: distinct_7d, column: amount, aggregation: approx_distinct, window: 7d}
  - {name: max_7d, column: amount, aggregation: max, window: 7d}
`

// TestSketchesBesideCachedWindows reads a window whose plain features are
// served from the window cache and whose sketches (which a merge modifies
// in place) are not, several times and in different orders: every read
// equals a fresh merge of the stored tiles.
func TestSketchesBesideCachedWindows(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), sketchView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	byKey := map[string]*tiles.Tile{}
	// One small value per hour, and 40 large ones in the newest hour: a
	// read that merged the newest tile into a cached sketch would move
	// the next read's median.
	type ev struct {
		ts  int64
		val float64
	}
	var evs []ev
	for h := 1; h < 60; h++ {
		evs = append(evs, ev{now - int64(h)*3_600_000, float64(h % 7)})
	}
	for i := range 40 {
		evs = append(evs, ev{now - int64(i), 100 + float64(i)})
	}
	for _, e := range evs {
		ts := e.ts
		start := tiles.StartOf(ts, time.Hour)
		key := tiles.Key(v.Name, "u", 3_600_000, start)
		tl := byKey[key]
		if tl == nil {
			tl = &tiles.Tile{View: v.Name, Entity: "u", ResolutionMs: 3_600_000, StartMs: start, Features: map[string]*tiles.IR{}}
			byKey[key] = tl
		}
		tl.MaxEventMs = max(tl.MaxEventMs, ts)
		for _, f := range v.Features {
			ir := tl.Features[f.Name]
			if ir == nil {
				ir = &tiles.IR{}
				tl.Features[f.Name] = ir
			}
			ir.Observe(f.Aggregation, e.val, ts)
		}
	}
	var stored []*tiles.Tile
	for _, tl := range byKey {
		stored = append(stored, tl)
	}
	fx.put(t, v, stored...)
	want := func(f featurespec.Feature) float64 {
		t.Helper()
		// Fresh copies: the stored tiles must not be merged into.
		var fresh []*tiles.Tile
		for _, tl := range stored {
			b, err := tl.Encode()
			if err != nil {
				t.Fatal(err)
			}
			c, err := tiles.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			fresh = append(fresh, c)
		}
		ir, _ := tiles.Window(fresh, f, now)
		x, ok := ir.Value(f.Aggregation)
		if !ok {
			t.Fatalf("%s: no value", f.Name)
		}
		n, _ := tiles.Number(x)
		return n
	}
	refs := refsOf(v)
	for round := range 4 {
		if round%2 == 1 {
			slices.Reverse(refs)
		}
		res, err := fx.online.Get(context.Background(), refs, core.MapRows{user("u")})
		if err != nil {
			t.Fatal(err)
		}
		for i, ref := range refs {
			name := strings.TrimPrefix(ref, "sketchy:")
			var f featurespec.Feature
			for _, g := range v.Features {
				if g.Name == name {
					f = g
				}
			}
			if got, w := res.Values[i].Double, want(f); got != w || res.Values[i].Status != core.StatusPresent {
				t.Fatalf("read %d %s: %v (status %d), want %v", round, name, got, res.Values[i].Status, w)
			}
		}
		res.Release()
	}
}

// TestReloadedViewsReplaceResolvedRequests asks the same feature list
// before and after the views change: resolved lists are kept between
// requests, but never across a reload.
func TestReloadedViewsReplaceResolvedRequests(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	fx.put(t, v, buildTiles(v, "u", []event{{ts: now - 20*60_000, amount: 2}, {ts: now - 60_000, amount: 3}})...)
	cat := core.NewCatalog(fx.views)
	on, err := core.NewOnline(fx.store, cat, fx.clock.Now, core.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	refs := []string{"txns:count_10m", "txns:sum_1h"}
	get := func() ([]core.Value, error) {
		res, err := on.Get(context.Background(), slices.Clone(refs), core.MapRows{user("u")})
		if err != nil {
			return nil, err
		}
		defer res.Release()
		return slices.Clone(res.Values), nil
	}
	for range 2 {
		vals, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if vals[0].Double != 1 || vals[1].Double != 5 {
			t.Fatalf("count_10m, sum_1h = %v, %v; want 1, 5", vals[0].Double, vals[1].Double)
		}
	}
	// count_10m becomes a 1-hour count; sum_1h goes away.
	edited := strings.Replace(strings.Replace(txnView, "{name: count_10m, aggregation: count, window: 10m}", "{name: count_10m, aggregation: count, window: 1h}", 1),
		"  - {name: sum_1h, column: amount, aggregation: sum, window: 1h}\n", "", 1)
	cat.Set(parse(t, edited))
	var re *core.RequestError
	if _, err := get(); !errors.As(err, &re) || !strings.Contains(re.Msg, `has no feature "sum_1h"`) {
		t.Fatalf("after sum_1h was removed: err = %v, want a RequestError naming it", err)
	}
	refs = refs[:1]
	vals, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if vals[0].Double != 2 {
		t.Fatalf("count_10m over 1h after the edit = %v, want 2", vals[0].Double)
	}
}

// TestConcurrentReadersShareCaches has goroutines ask different subsets of
// a view's features at once, so cache entries are looked up, extended and
// replaced concurrently and resolved lists are shared: every answer equals
// the one computed alone beforehand. (Run with -race.)
func TestConcurrentReadersShareCaches(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, core.DefaultLimits(), txnView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	var rows core.MapRows
	for i := range 6 {
		id := fmt.Sprintf("u%d", i)
		var evs []event
		for h := range 30 + i {
			evs = append(evs, event{ts: now - int64(h)*2_400_000, amount: float64(i*100 + h), merchant: "m"})
		}
		fx.put(t, v, buildTiles(v, id, evs)...)
		rows = append(rows, user(id))
	}
	all := refsOf(v)
	subsets := [][]string{all, all[2:], all[:5], {all[4], all[2], all[3]}, {all[3]}}
	// Reference answers from a reader of its own (cold caches).
	want := make([][]core.Value, len(subsets))
	for i, refs := range subsets {
		on, err := core.NewOnline(fx.store, core.NewCatalog(fx.views), fx.clock.Now, core.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		res, err := on.Get(context.Background(), refs, rows)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = slices.Clone(res.Values)
		res.Release()
	}
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range 40 {
				i := (g + k) % len(subsets)
				res, err := fx.online.Get(context.Background(), subsets[i], rows)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(res.Values, want[i]) {
					errs <- fmt.Errorf("goroutine %d read %d (subset %d): answer differs from the one computed alone", g, k, i)
					res.Release()
					return
				}
				res.Release()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestTilesWithDifferentFeatureSets reads windows over tiles that hold
// different features (a view that gained features keeps older tiles
// without them): tiles alternate between sets within a window, so feature
// lookups change sets tile by tile. Every value agrees with tiles.Window
// over the tiles as written, on the first read (windows computed) and the
// second (windows cached).
func TestTilesWithDifferentFeatureSets(t *testing.T) {
	t.Parallel()
	noCache := core.DefaultLimits()
	noCache.WindowCacheEntries = 0
	for _, limits := range []core.Limits{core.DefaultLimits(), noCache} {
		testTilesWithDifferentFeatureSets(t, limits)
	}
}

func testTilesWithDifferentFeatureSets(t *testing.T, limits core.Limits) {
	fx := newFixture(t, limits, txnView)
	v := fx.views[0]
	now := fx.clock.Now().UnixMilli()
	var written []*tiles.Tile
	for h := range 30 {
		ts := now - int64(h)*3_600_000 - 60_000
		tl := buildTiles(v, "u", []event{{ts: ts, amount: float64(h + 1), merchant: "m"}})
		for _, x := range tl {
			if x.ResolutionMs != 3_600_000 {
				continue
			}
			// Every third tile lacks avg_24h, every other one max_24h.
			if h%3 == 0 {
				delete(x.Features, "avg_24h")
			}
			if h%2 == 1 {
				delete(x.Features, "max_24h")
			}
			written = append(written, x)
		}
	}
	fx.put(t, v, written...)
	refs := []string{"txns:max_24h", "txns:avg_24h", "txns:max_24h"}
	for read := range 2 {
		res, err := fx.online.Get(context.Background(), refs, core.MapRows{user("u")})
		if err != nil {
			t.Fatal(err)
		}
		for i, ref := range refs {
			name := strings.TrimPrefix(ref, "txns:")
			var f featurespec.Feature
			for _, g := range v.Features {
				if g.Name == name {
					f = g
				}
			}
			ir, _ := tiles.Window(written, f, now)
			raw, ok := ir.Value(f.Aggregation)
			want, _ := raw.(float64)
			if got := res.Values[i]; !ok || got.Kind != core.KindDouble || got.Double != want {
				t.Fatalf("window cache of %d entries, read %d %s: %+v, want %v (found %v)", limits.WindowCacheEntries, read, name, got, want, ok)
			}
		}
		res.Release()
	}
}
