package aggregate

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
)

const steadyYAML = `
name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts, allowed_lateness: 1m}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: sum_1h, column: x, aggregation: sum, window: 1h}
  - {name: max_1h, column: x, aggregation: max, window: 1h}
  - {name: pages_1h, column: page, aggregation: approx_distinct, window: 1h}
  - {name: p90_1h, column: x, aggregation: p90, window: 1h}
  - {name: last_page, column: page, aggregation: latest}
`

// TestMemoryFlatUnderSteadyLoad is DESIGN.md §6's "memory flat under a
// steady load": 5000 users send events whose time advances 100ms per event
// (with up to 50s of disorder), flushed every 10k events like the
// aggregator does, for 1.4M events (39h of event time). Once steady, the
// live heap after N more events and after 4N more must be the same:
// nothing grows with the processed volume.
func TestMemoryFlatUnderSteadyLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("feeds 1.4M events")
	}
	const (
		users = 5000
		// Tiles expire after an hour and a bit of event time (40k events),
		// but sketches and slice capacities settle later: the heap stops
		// rising after ~600k events (measured: 43.8, 45.9, 48.9, 49.6,
		// 49.4, 51.4, 51.5, 50.8 MiB every 200k events). So warm up with
		// 600k, then compare N and 4N more.
		warmup = 600_000
		n      = 200_000
	)
	e := mustEngine(t, mustView(t, steadyYAML))
	rng := rand.New(rand.NewPCG(5, 6))
	var buf []byte
	fed := 0
	feed := func(k int) {
		for range k {
			buf = append(buf[:0], `{"user_id":"u`...)
			buf = strconv.AppendInt(buf, int64(rng.IntN(users)), 10)
			buf = append(buf, `","ts":`...)
			buf = strconv.AppendInt(buf, t0+int64(fed)*100-rng.Int64N(50_000), 10)
			buf = append(buf, `,"x":`...)
			buf = strconv.AppendInt(buf, int64(rng.IntN(1000)), 10)
			buf = append(buf, `,"page":"p`...)
			buf = strconv.AppendInt(buf, int64(rng.IntN(300)), 10)
			buf = append(buf, `"}`...)
			if err := e.Apply(Record{Topic: "events.clicks", Partition: fed % 4, Offset: int64(fed / 4), Value: buf}); err != nil {
				t.Fatalf("event %d: %v", fed, err)
			}
			fed++
			if fed%10_000 == 0 {
				if _, err := e.Flush(); err != nil {
					t.Fatal(err)
				}
				e.Recycle()
			}
		}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}

	feed(warmup)
	feed(n)
	h1, tiles1 := heap(), e.C.Tiles.Load()
	feed(3 * n)
	h4, tiles4 := heap(), e.C.Tiles.Load()
	t.Logf("after %d events: heap %.1f MiB, %d tiles; after %d: heap %.1f MiB, %d tiles; %d expired, %d late",
		warmup+n, float64(h1)/(1<<20), tiles1, warmup+4*n, float64(h4)/(1<<20), tiles4, e.C.Expired.Load(), e.C.Late.Load())
	if e.C.Expired.Load() < int64(tiles4) {
		t.Fatalf("only %d tiles expired while %d are held: the stream did not reach a steady state", e.C.Expired.Load(), tiles4)
	}
	// The same state (within the randomness of which users are active)
	// must take the same memory: 10% plus 1 MiB of slack for the runtime.
	if limit := h1 + h1/10 + 1<<20; h4 > limit {
		t.Fatalf("live heap grew with processed volume: %.1f MiB after %d events, %.1f MiB after %d (limit %.1f MiB)",
			float64(h1)/(1<<20), warmup+n, float64(h4)/(1<<20), warmup+4*n, float64(limit)/(1<<20))
	}
}
