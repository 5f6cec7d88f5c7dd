package aggregate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/testutil"
)

// benchRecords builds n Debezium transaction inserts for users entities,
// time advancing 10ms per record with up to a minute of disorder.
func benchRecords(tb testing.TB, n, users int) []Record {
	rng := rand.New(rand.NewPCG(1, 1))
	recs := make([]Record, n)
	for i := range recs {
		after := map[string]any{"txn_id": i, "user_id": fmt.Sprint("u", rng.IntN(users)), "merchant_id": fmt.Sprint("m", rng.IntN(500)),
			"amount": fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100)), "currency": "USD",
			"created_at": time.UnixMilli(t0 + int64(i)*10 - rng.Int64N(60_000)).UTC().Format(time.RFC3339Nano)}
		b, err := json.Marshal(map[string]any{"op": "c", "after": after, "source": map[string]any{"lsn": i}, "ts_ms": t0})
		if err != nil {
			tb.Fatal(err)
		}
		recs[i] = Record{Topic: "cdc.public.transactions", Partition: i % 4, Offset: int64(i / 4), Value: b}
	}
	return recs
}

func fraudViews(tb testing.TB) []*featurespec.View {
	vs, err := featurespec.LoadDir("../../examples/fraud/features")
	if err != nil {
		tb.Fatal(err)
	}
	return vs
}

// BenchmarkApply is the aggregation core alone: decode a Debezium event,
// update the user_transactions view's 21 features in three tiles, and
// flush (encode changed tiles) every 50k records, recycling the flush
// buffer as the aggregator does after the tiles were acknowledged.
// events/cpu-s counts the process's CPU time, the garbage collector's on
// the other core included: the rate per core.
//
// Records are never repeated up to a million events: a repeated record's
// event time is long behind its entity's watermark, so it would be dropped
// as late at a fraction of the cost of an applied one.
func BenchmarkApply(b *testing.B) {
	recs := benchRecords(b, min(max(b.N, 1), 1_000_000), 10_000)
	e := mustEngine(b, fraudViews(b)...)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testutil.ProcessCPU(b)
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		r.Offset += int64(i/len(recs)) * int64(len(recs))
		_ = e.Apply(r)
		if i%50_000 == 49_999 {
			if _, err := e.Flush(); err != nil {
				b.Fatal(err)
			}
			// The service recycles a flush's buffer once Kafka acknowledged it.
			e.Recycle()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/(testutil.ProcessCPU(b)-cpu0).Seconds(), "events/cpu-s")
}

// BenchmarkMemoryPerMillionEntities holds one transaction for each of
// b.N*100k users of the fraud views and reports the live heap per million
// entities.
func BenchmarkMemoryPerMillionEntities(b *testing.B) {
	const users = 200_000
	recs := benchRecords(b, users, 1<<62)
	for i := range recs { // every record its own user
		var env map[string]any
		_ = json.Unmarshal(recs[i].Value, &env)
		env["after"].(map[string]any)["user_id"] = fmt.Sprint("user-", i)
		recs[i].Value, _ = json.Marshal(env)
	}
	views := fraudViews(b)
	b.ResetTimer()
	var perMillion float64
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		e := mustEngine(b, views...)
		for _, r := range recs {
			_ = e.Apply(r)
		}
		if _, err := e.Flush(); err != nil {
			b.Fatal(err)
		}
		// The flushed tiles were written: what stays is the per-entity state
		// (plus the spare flush chunks, at most maxSpare).
		e.Recycle()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		perMillion = float64(after.HeapAlloc-before.HeapAlloc) / users * 1e6
		runtime.KeepAlive(e)
		if e.Entities() != users {
			b.Fatalf("%d entities held, want %d", e.Entities(), users)
		}
	}
	b.ReportMetric(perMillion/(1<<20), "MiB/1M-entities")
}

func FuzzApply(f *testing.F) {
	views := []*featurespec.View{
		mustView(f, txnYAML),
		mustView(f, clicksYAML),
	}
	for _, r := range benchRecords(f, 3, 2) {
		f.Add("cdc.public.transactions", r.Value)
	}
	f.Add("events.clicks", []byte(`{"user_id":"u","ts":"2026-11-02T10:00:00Z","page":"a","dwell":3}`))
	f.Add("cdc.public.transactions", []byte(`{"payload":{"op":"u","before":{"user_id":1,"amount":"1","created_at":5},"after":{"user_id":1,"amount":"2","created_at":5}}}`))
	f.Fuzz(func(t *testing.T, topic string, value []byte) {
		e, err := New(views)
		if err != nil {
			t.Fatal(err)
		}
		_ = e.Apply(Record{Topic: topic, Value: value, TimeMs: t0})
		_ = e.Apply(Record{Topic: topic, Value: value, TimeMs: t0, Offset: 1})
		out, err := e.Flush()
		if err != nil {
			t.Fatalf("flush after %q: %v", value, err)
		}
		for _, o := range out {
			if o.Value == nil {
				continue
			}
			if _, err := decodeTile(o.Value); err != nil {
				t.Fatalf("emitted tile does not decode: %v\n%s", err, o.Value)
			}
		}
	})
}
