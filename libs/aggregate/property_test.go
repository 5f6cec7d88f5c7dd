package aggregate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

const propYAML = `
name: prop
entity: {name: user, join_keys: [user_id]}
source: {topic: events.prop, format: json, event_time: ts, allowed_lateness: 3m}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: sum_1h, column: x, aggregation: sum, window: 1h}
  - {name: avg_24h, column: x, aggregation: avg, window: 24h}
  - {name: min_1h, column: x, aggregation: min, window: 1h}
  - {name: max_7d, column: x, aggregation: max, window: 7d}
  - {name: sd_1h, column: x, aggregation: stddev, window: 1h}
  - {name: last_10m, column: x, aggregation: last, window: 10m}
  - {name: first_1h, column: x, aggregation: first, window: 1h}
  - {name: kinds_24h, column: kind, aggregation: approx_distinct, window: 24h}
  - {name: p90_1h, column: x, aggregation: p90, window: 1h}
  - {name: n_30d, aggregation: count, window: 30d}
  - {name: latest_x, column: x, aggregation: latest}
`

type propEvent struct {
	user string
	ts   int64
	x    float64
	kind string
}

// bruteForce computes feature f of user at now from every event, the way
// the sawtooth window defines it: events from the window start aligned
// down to the feature's resolution up to now.
func bruteForce(evs []propEvent, f featurespec.Feature, user string, now int64) (any, bool) {
	res := tiles.ResolutionOf(f)
	from := int64(math.MinInt64)
	if res > 0 {
		from = tiles.StartOf(now-time.Duration(f.Window).Milliseconds(), res)
	}
	var xs []float64
	kinds := map[string]bool{}
	var first, last propEvent
	n := 0
	for _, e := range evs {
		if e.user != user || e.ts < from || e.ts > now {
			continue
		}
		if n == 0 || e.ts < first.ts {
			first = e
		}
		if n == 0 || e.ts >= last.ts {
			last = e
		}
		n++
		xs = append(xs, e.x)
		kinds[e.kind] = true
	}
	if n == 0 {
		switch f.Aggregation {
		case featurespec.AggCount, featurespec.AggSum, featurespec.AggApproxDistinct:
			return 0.0, true
		}
		return nil, false
	}
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	switch f.Aggregation {
	case featurespec.AggCount:
		return float64(n), true
	case featurespec.AggSum:
		return sum, true
	case featurespec.AggAvg:
		return sum / float64(n), true
	case featurespec.AggMin:
		return slices.Min(xs), true
	case featurespec.AggMax:
		return slices.Max(xs), true
	case featurespec.AggStddev:
		m := sum / float64(n)
		return math.Sqrt(math.Max(0, sq/float64(n)-m*m)), true
	case featurespec.AggFirst:
		return first.x, true
	case featurespec.AggLast, featurespec.AggLatest:
		return last.x, true
	case featurespec.AggApproxDistinct:
		return float64(len(kinds)), true
	case featurespec.AggP90:
		slices.Sort(xs)
		return xs[int(0.9*float64(n-1))], true
	}
	return nil, false
}

func close(a, b float64, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// TestWindowsMatchBruteForce feeds random event streams, out of order
// within the allowed lateness, and at random points compares every
// feature's merged window at random query times (at or after the newest
// event, as online reads are) with a recomputation from the raw events.
func TestWindowsMatchBruteForce(t *testing.T) {
	v := mustView(t, propYAML)
	lateness := time.Duration(v.Source.AllowedLateness).Milliseconds()
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			e := mustEngine(t, v)
			users := []string{"a", "b", "c"}
			var evs []propEvent
			clock := t0
			maxTs := map[string]int64{}
			for i := 0; i < 3000; i++ {
				// Time advances by up to 20 minutes, sometimes by hours, so
				// that tiles of every resolution expire along the way.
				step := rng.Int64N(20 * minute)
				if rng.IntN(50) == 0 {
					step = rng.Int64N(48 * 60 * minute)
				}
				clock += step
				u := users[rng.IntN(len(users))]
				ts := clock - rng.Int64N(lateness) // out of order, within lateness of anything seen
				if m, ok := maxTs[u]; ok && ts < m-lateness {
					ts = m - lateness
				}
				if ts > maxTs[u] {
					maxTs[u] = ts
				}
				ev := propEvent{user: u, ts: ts, x: math.Round(rng.NormFloat64()*1000) / 100, kind: fmt.Sprint("k", rng.IntN(40))}
				evs = append(evs, ev)
				if err := e.Apply(jsonRec(t, "events.prop", int64(i), map[string]any{"user_id": u, "ts": ts, "x": ev.x, "kind": ev.kind})); err != nil {
					t.Fatal(err)
				}
				if rng.IntN(100) != 0 {
					continue
				}
				if _, err := e.Flush(); err != nil {
					t.Fatal(err)
				}
				for q := 0; q < 5; q++ {
					now := clock + rng.Int64N(2*24*60*minute)
					for _, f := range v.Features {
						for _, u := range users {
							want, wok := bruteForce(evs, f, u, now)
							got := value(t, e, v, f.Name, u, now)
							if !wok {
								if got != nil {
									t.Fatalf("event %d, %s of %s at +%dm: got %v, want no value", i, f.Name, u, (now-t0)/minute, got)
								}
								continue
							}
							g, _ := tiles.Number(got)
							w := want.(float64)
							rel := 1e-9
							switch f.Aggregation {
							case featurespec.AggP90:
								rel = 0.0101
							case featurespec.AggStddev:
								rel = 1e-6
							}
							if got == nil || !close(g, w, rel) {
								t.Fatalf("event %d, %s of %s at +%dm: got %v, want %v", i, f.Name, u, (now-t0)/minute, got, want)
							}
						}
					}
				}
			}
			if n := e.C.Late.Load(); n != 0 {
				t.Fatalf("%d events within the lateness were dropped", n)
			}
			if e.C.Expired.Load() == 0 {
				t.Fatal("no tile expired: the stream did not exercise expiry")
			}
		})
	}
}
