package pointintime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/testutil"
)

// benchView is like examples/fraud's user_transactions: 20 windowed
// features over 10m, 1h and 24h windows (5-minute and 1-hour tiles).
const benchView = `name: user_txn
entity: {name: user, join_keys: [user_id]}
source: {topic: cdc.public.transactions, format: json, event_time: created_at, allowed_lateness: 1m}
max_age: 24h
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: n_1h, aggregation: count, window: 1h}
  - {name: n_24h, aggregation: count, window: 24h}
  - {name: sum_10m, column: amount, aggregation: sum, window: 10m}
  - {name: sum_1h, column: amount, aggregation: sum, window: 1h}
  - {name: sum_24h, column: amount, aggregation: sum, window: 24h}
  - {name: avg_10m, column: amount, aggregation: avg, window: 10m}
  - {name: avg_1h, column: amount, aggregation: avg, window: 1h}
  - {name: avg_24h, column: amount, aggregation: avg, window: 24h}
  - {name: min_1h, column: amount, aggregation: min, window: 1h}
  - {name: min_24h, column: amount, aggregation: min, window: 24h}
  - {name: max_1h, column: amount, aggregation: max, window: 1h}
  - {name: max_24h, column: amount, aggregation: max, window: 24h}
  - {name: std_1h, column: amount, aggregation: stddev, window: 1h}
  - {name: std_24h, column: amount, aggregation: stddev, window: 24h}
  - {name: last_10m, column: amount, aggregation: last, window: 10m}
  - {name: first_24h, column: amount, aggregation: first, window: 24h}
  - {name: merchants_24h, column: merchant_id, aggregation: approx_distinct, window: 24h}
  - {name: p90_1h, column: amount, aggregation: p90, window: 1h}
  - {name: p50_24h, column: amount, aggregation: p50, window: 24h}
`

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// BenchmarkTrainingSet computes a training set of 20 windowed features
// for TRIBUTARY_BENCH_SPINE spine rows (default 500k) over
// TRIBUTARY_BENCH_RECORDS source records (default 1M; 20k users, two days)
// held in memory. It reports spine rows × features per second of the
// process's CPU time (Compute runs on one goroutine: per core).
func BenchmarkTrainingSet(b *testing.B) {
	v, err := featurespec.Parse("bench.yaml", []byte(benchView))
	if err != nil {
		b.Fatal(err)
	}
	nSpine := envInt("TRIBUTARY_BENCH_SPINE", 500_000)
	nRecs := envInt("TRIBUTARY_BENCH_RECORDS", 1_000_000)
	const users = 20_000
	const span = 2 * 24 * 3_600_000
	start := int64(1_700_000_000_000)
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make(Records, nRecs)
	for i := range recs {
		arrival := start + int64(i)*span/int64(nRecs)
		u := rng.IntN(users)
		recs[i] = aggregate.Record{Topic: "cdc.public.transactions", Partition: u % 4, Offset: int64(i), TimeMs: arrival,
			Value: fmt.Appendf(nil, `{"user_id":"u%05d","created_at":%d,"amount":%d.%02d,"merchant_id":"m%03d"}`, u, arrival-rng.Int64N(30_000), rng.IntN(500), rng.IntN(100), rng.IntN(300))}
	}
	spine := make(rows, nSpine)
	for i := range spine {
		spine[i].user = fmt.Sprintf("u%05d", rng.IntN(users))
		spine[i].at = start + rng.Int64N(span+3_600_000)
	}
	req := Request{Views: []*featurespec.View{v}, Refs: []string{"user_txn:*"}, Spine: spine, History: recs}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU(b)
	wall0 := time.Now()
	var res *Result
	for range b.N {
		if res, err = Compute(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := (testutil.ProcessCPU(b) - cpu0).Seconds()
	wall := time.Since(wall0).Seconds()
	values := float64(b.N) * float64(nSpine) * float64(len(res.Features))
	b.ReportMetric(values/cpu, "values/cpu-s")
	b.ReportMetric(float64(b.N)*float64(nSpine)/cpu*60, "spine-rows/cpu-min")
	b.ReportMetric(values/wall, "values/s")
	b.ReportMetric(float64(nRecs), "records")
}
