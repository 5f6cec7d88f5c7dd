package pointintime

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/libs/tiles/served"
)

const clicksYAML = `name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts, allowed_lateness: 2m, filter: "kind != 'bot'"}
max_age: 20m
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: amount_sum_10m, column: amount, aggregation: sum, window: 10m}
  - {name: amount_min_1h, column: amount, aggregation: min, window: 1h}
  - {name: amount_max_1h, column: amount, aggregation: max, window: 1h}
  - {name: amount_avg_1h, column: amount, aggregation: avg, window: 1h}
  - {name: page_last_10m, column: page, aggregation: last, window: 10m}
  - {name: page_first_1h, column: page, aggregation: first, window: 1h}
  - {name: pages_1h, column: page, aggregation: approx_distinct, window: 1h}
  - {name: page, column: page, aggregation: latest}
`

func mustView(t testing.TB, yaml string) *featurespec.View {
	t.Helper()
	v, err := featurespec.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// event is one generated click.
type event struct {
	user      string
	arrival   int64
	ts        int64
	amount    float64
	page      string
	bot       bool
	partition int
	offset    int64
}

// rows is a Spine of (user, instant) rows.
type rows []struct {
	user string
	at   int64
}

func (r rows) Len() int            { return len(r) }
func (r rows) EventMs(i int) int64 { return r[i].at }
func (r rows) JoinKey(i int, key string) (string, bool) {
	if key != "user_id" {
		return "", false
	}
	return r[i].user, true
}

const base = int64(1_700_000_000_000)

// generate makes a reproducible stream: arrivals increase per partition,
// event times are up to 6 minutes before arrival (lateness is 2m, so some
// are dropped), event times are distinct per user (no ties for last).
func generate(seed uint64, n int) ([]event, []aggregate.Record) {
	rng := rand.New(rand.NewPCG(seed, 1))
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	var evs []event
	arrival := base
	offsets := map[int]int64{}
	usedTs := map[string]bool{}
	for range n {
		arrival += rng.Int64N(90_000)
		u := users[rng.IntN(len(users))]
		ts := arrival - rng.Int64N(360_000)
		for usedTs[fmt.Sprint(u, ts)] {
			ts--
		}
		usedTs[fmt.Sprint(u, ts)] = true
		p := int(u[1]-'0') % 2 // all of a user's events in one partition, as keyed producers do
		e := event{user: u, arrival: arrival, ts: ts, amount: float64(rng.IntN(400)-100) / 4, page: fmt.Sprintf("/p%d", rng.IntN(6)), bot: rng.IntN(10) == 0, partition: p, offset: offsets[p]}
		offsets[p]++
		evs = append(evs, e)
	}
	var recs []aggregate.Record
	for _, e := range evs {
		kind := "human"
		if e.bot {
			kind = "bot"
		}
		recs = append(recs, aggregate.Record{Topic: "events.clicks", Partition: e.partition, Offset: e.offset, TimeMs: e.arrival,
			Value: fmt.Appendf(nil, `{"user_id":%q,"ts":%d,"amount":%g,"page":%q,"kind":%q}`, e.user, e.ts, e.amount, e.page, kind)})
	}
	return evs, recs
}

// bruteForce is what a read at now answers, computed from the raw events.
func bruteForce(v *featurespec.View, evs []event, user string, now int64, eventTimeOnly bool) []served.Value {
	lateness := int64(120_000)
	var accepted []event
	if eventTimeOnly {
		for _, e := range evs {
			if e.user == user && !e.bot && e.ts <= now {
				accepted = append(accepted, e)
			}
		}
	} else {
		var wm int64
		seen := false
		for _, e := range evs { // in arrival order
			if e.user != user || e.bot || e.arrival > now {
				continue
			}
			if seen && e.ts < wm-lateness {
				continue // late
			}
			if !seen || e.ts > wm {
				wm = e.ts
			}
			seen = true
			accepted = append(accepted, e)
		}
	}
	out := make([]served.Value, len(v.Features))
	if len(accepted) == 0 {
		for i := range out {
			out[i] = served.NotFound
		}
		return out
	}
	var entityNewest int64
	for _, e := range accepted {
		entityNewest = max(entityNewest, e.ts)
	}
	maxAge := int64(20 * 60_000)
	for i, f := range v.Features {
		res := tiles.ResolutionOf(f).Milliseconds()
		var in []event
		if res == 0 {
			in = accepted
		} else {
			from := tiles.StartOf(now-int64(f.Window)/1e6, tiles.ResolutionOf(f))
			for _, e := range accepted {
				if s := tiles.StartOf(e.ts, tiles.ResolutionOf(f)); s >= from && s <= now {
					in = append(in, e)
				}
			}
		}
		var newest int64
		for _, e := range in {
			newest = max(newest, e.ts)
		}
		val := served.Value{Kind: served.KindDouble}
		found := true
		byTs := slices.Clone(in)
		slices.SortFunc(byTs, func(a, b event) int { return int(a.ts - b.ts) })
		switch f.Aggregation {
		case featurespec.AggCount:
			val.Double = float64(len(in))
		case featurespec.AggSum:
			for _, e := range in {
				val.Double += e.amount
			}
		case featurespec.AggMin, featurespec.AggMax, featurespec.AggAvg:
			if len(in) == 0 {
				found = false
				break
			}
			mn, mx, sum := math.Inf(1), math.Inf(-1), 0.0
			for _, e := range in {
				mn, mx, sum = math.Min(mn, e.amount), math.Max(mx, e.amount), sum+e.amount
			}
			val.Double = map[string]float64{featurespec.AggMin: mn, featurespec.AggMax: mx, featurespec.AggAvg: sum / float64(len(in))}[f.Aggregation]
		case featurespec.AggLast, featurespec.AggLatest:
			if len(in) == 0 {
				found = false
				break
			}
			val = served.Value{Kind: served.KindString, Str: byTs[len(byTs)-1].page}
		case featurespec.AggFirst:
			if len(in) == 0 {
				found = false
				break
			}
			val = served.Value{Kind: served.KindString, Str: byTs[0].page}
		case featurespec.AggApproxDistinct:
			pages := map[string]bool{}
			for _, e := range in {
				pages[e.page] = true
			}
			val.Double = float64(len(pages))
		}
		if !found {
			out[i] = served.NotFound
			continue
		}
		if newest == 0 {
			newest = entityNewest
		}
		val.EventMs = newest
		val.Status = served.StatusPresent
		if now-newest > maxAge {
			val.Status = served.StatusStale
		}
		out[i] = val
	}
	return out
}

func sameValue(a, b served.Value) bool {
	if a.Kind == served.KindDouble && b.Kind == served.KindDouble {
		return a.Status == b.Status && a.EventMs == b.EventMs && (a.Double == b.Double || math.Abs(a.Double-b.Double) <= 1e-9*math.Abs(b.Double))
	}
	return a == b
}

// TestMatchesBruteForce: for random streams (out of order, late drops,
// filtered rows) and random spines, every value equals a recomputation
// from the raw events, in arrival and in event-time mode.
func TestMatchesBruteForce(t *testing.T) {
	t.Parallel()
	v := mustView(t, clicksYAML)
	for seed := range uint64(8) {
		for _, eventTimeOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("seed%d/eventTimeOnly=%v", seed, eventTimeOnly), func(t *testing.T) {
				t.Parallel()
				evs, recs := generate(seed, 400)
				rng := rand.New(rand.NewPCG(seed, 2))
				var spine rows
				end := evs[len(evs)-1].arrival + 30*60_000
				for range 300 {
					spine = append(spine, struct {
						user string
						at   int64
					}{fmt.Sprintf("u%d", 1+rng.IntN(6)), base - 60_000 + rng.Int64N(end-base+60_000)})
				}
				res, err := Compute(context.Background(), Request{Views: []*featurespec.View{v}, Refs: []string{"clicks:*"}, Spine: spine, History: Records(recs), EventTimeOnly: eventTimeOnly})
				if err != nil {
					t.Fatal(err)
				}
				if !eventTimeOnly && res.Stats.Late == 0 {
					t.Fatal("the stream made no late event: the test does not exercise lateness")
				}
				for k, i := range res.Rows {
					want := bruteForce(v, evs, spine[i].user, spine[i].at, eventTimeOnly)
					for j, got := range res.Row(k) {
						if !sameValue(got, want[j]) {
							t.Fatalf("row %d (%s at %d), %s: got %+v, want %+v", i, spine[i].user, spine[i].at, res.Features[j].Ref, got, want[j])
						}
					}
				}
			})
		}
	}
}

// TestShardsConcatenateToTheWhole: the rows of shards 0..N-1 are a
// partition of the spine, each with the whole job's values.
func TestShardsConcatenateToTheWhole(t *testing.T) {
	t.Parallel()
	v := mustView(t, clicksYAML)
	evs, recs := generate(42, 300)
	var spine rows
	for i, e := range evs {
		if i%3 == 0 {
			spine = append(spine, struct {
				user string
				at   int64
			}{e.user, e.arrival + 1000})
		}
	}
	req := Request{Views: []*featurespec.View{v}, Refs: []string{"clicks:n_10m", "clicks:page"}, Spine: spine, History: Records(recs)}
	whole, err := Compute(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for i := range 3 {
		req.Shard = Shard{I: i, N: 3}
		part, err := Compute(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(part.Rows) == 0 || len(part.Rows) == len(spine) {
			t.Fatalf("shard %d holds %d of %d rows: the hash does not spread the users", i, len(part.Rows), len(spine))
		}
		for k, r := range part.Rows {
			if seen[r] {
				t.Fatalf("spine row %d is in two shards", r)
			}
			seen[r] = true
			if !slices.Equal(part.Row(k), whole.Row(r)) {
				t.Fatalf("shard %d, spine row %d: %+v, whole job: %+v", i, r, part.Row(k), whole.Row(r))
			}
		}
	}
	if len(seen) != len(spine) {
		t.Fatalf("shards hold %d of %d rows", len(seen), len(spine))
	}
}

func TestBadRequestsNameTheProblem(t *testing.T) {
	t.Parallel()
	v := mustView(t, clicksYAML)
	spine := rows{{"u1", base}}
	for _, c := range []struct {
		name  string
		req   Request
		wants string
	}{
		{"unknown view", Request{Refs: []string{"nope:n_10m"}}, `feature ref "nope:n_10m": unknown feature view "nope" (views: clicks)`},
		{"unknown feature", Request{Refs: []string{"clicks:nope"}}, `feature ref "clicks:nope": feature view "clicks" has no feature "nope"`},
		{"no colon", Request{Refs: []string{"clicks"}}, `feature ref "clicks": want view:feature or view:*`},
		{"twice", Request{Refs: []string{"clicks:*", "clicks:page"}}, `feature ref "clicks:page": feature clicks:page is already requested by "clicks:*"`},
		{"no refs", Request{}, "feature refs: none given"},
		{"bad shard", Request{Refs: []string{"clicks:page"}, Shard: Shard{I: 3, N: 3}}, "shard 3/3: want 0 <= i < N"},
		{"missing join key", Request{Refs: []string{"clicks:page"}, Spine: rows{{"u1", base}, {"", base}}}, `spine row 2: no value for join key "user_id" of feature view "clicks"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.req.Views = []*featurespec.View{v}
			if c.req.Spine == nil {
				c.req.Spine = spine
			}
			c.req.History = Records(nil)
			_, err := Compute(context.Background(), c.req)
			if err == nil || !strings.Contains(err.Error(), c.wants) {
				t.Fatalf("error %v, want one containing %q", err, c.wants)
			}
		})
	}
}
