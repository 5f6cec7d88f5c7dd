package kafkaio

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// BenchmarkEndToEnd: b.N click events already on the embedded broker
// (4 partitions, 10k users) are consumed by the featurizer's source stage,
// routed through the repartition topic (acks=all), aggregated by a view of
// six features in three tiles (count, sum, max, approx_distinct, p90,
// latest), and their tiles written to features.tiles with acks=all; the
// clock stops when every routed record is aggregated and the last flush is
// written.
//
// The broker runs in a child process, as Kafka runs elsewhere in
// production, so this process is the featurizer (both stages) alone:
// events/s is the wall-clock rate (GOMAXPROCS cores, shared with the
// broker), events/cpu-s the events per second of CPU time this process
// used (user + system), that is per core, the figure of DESIGN.md §6.
func BenchmarkEndToEnd(b *testing.B) {
	view, err := featurespec.Parse("bench.yaml", []byte(crashView))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	benchEndToEnd(b, []*featurespec.View{view}, "events.clicks", clicks(t0), benchTracing{})
}

// BenchmarkEndToEndTraced is BenchmarkEndToEnd with tracing on (every
// root sampled, spans exported to a no-op exporter): unsampled, none of
// the events carries a sampled trace, so the cost is the per-record
// check; 1in1000 and 1in100, every 1000th (100th) event does and is
// followed to its tiles.
func BenchmarkEndToEndTraced(b *testing.B) {
	view, err := featurespec.Parse("bench.yaml", []byte(crashView))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	for _, c := range []struct {
		name  string
		every int
	}{{"unsampled", 0}, {"1in1000", 1000}, {"1in100", 100}} {
		b.Run(c.name, func(b *testing.B) {
			benchEndToEnd(b, []*featurespec.View{view}, "events.clicks", clicks(t0), benchTracing{tracer: tp.Tracer("bench"), sampleEvery: c.every})
		})
	}
}

// clicks makes click events of 10k users from t0 on.
func clicks(t0 int64) func(rng *rand.Rand, i int) (string, []byte) {
	return func(rng *rand.Rand, i int) (string, []byte) {
		u := fmt.Sprint("u", rng.IntN(10000))
		v, _ := json.Marshal(map[string]any{"user_id": u, "ts": t0 + int64(i)*5, "x": rng.IntN(1000), "page": fmt.Sprint("p", rng.IntN(300))})
		return u, v
	}
}

// benchTracing is how a benchmark traces: with tracer (nil: tracing off),
// every sampleEvery-th source record carrying a sampled trace (0: none).
type benchTracing struct {
	tracer      trace.Tracer
	sampleEvery int
}

// BenchmarkEndToEndFraud is BenchmarkEndToEnd with the fraud example's
// per-user transaction view (21 features in three tiles) over Debezium
// change events of public.transactions (inserts keyed by txn_id, 10k
// users, 500 merchants, decimal amounts as strings), as ingest writes them.
func BenchmarkEndToEndFraud(b *testing.B) {
	view, err := featurespec.LoadFile("../../../../examples/fraud/features/user_transactions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	benchEndToEnd(b, []*featurespec.View{view}, "cdc.public.transactions", func(rng *rand.Rand, i int) (string, []byte) {
		after := map[string]any{"txn_id": i, "user_id": rng.IntN(10000), "merchant_id": fmt.Sprint("m", rng.IntN(500)),
			"amount": fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100)), "currency": "USD",
			"created_at": t0.Add(time.Duration(i) * 5 * time.Millisecond).Format(time.RFC3339Nano)}
		v, _ := json.Marshal(map[string]any{"before": nil, "after": after, "op": "c", "ts_ms": t0.UnixMilli(),
			"source": map[string]any{"connector": "tributary", "db": "tributary", "schema": "public", "table": "transactions",
				"lsn": i, "sequence": fmt.Sprintf(`["%d","%d"]`, i, i)}})
		return fmt.Sprint(i), v
	}, benchTracing{})
}

// benchEndToEnd runs the end-to-end benchmark of views over b.N records of
// topic made by gen (key, value of record i).
func benchEndToEnd(b *testing.B, views []*featurespec.View, topic string, gen func(rng *rand.Rand, i int) (string, []byte), tracing benchTracing) {
	n := max(b.N, 1000)
	broker := testutil.KafkaProcess(b, 4)
	brokers := []string{broker}
	ctx := testutil.Context(b, 10*time.Minute)
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: topic, Partitions: 4}, kafka.TopicSpec{Name: tiles.Topic, Partitions: 4, Compacted: true},
		kafka.TopicSpec{Name: aggregate.RepartitionTopic, Partitions: repartitions}); err != nil {
		b.Fatal(err)
	}
	src, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: topic, BatchSize: 10000})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	batch := make([]kafka.Message, 0, 20000)
	for i := 0; i < n; i++ {
		k, v := gen(rng, i)
		m := kafka.Message{Key: []byte(k), Value: v}
		if tracing.sampleEvery > 0 && i%tracing.sampleEvery == 0 {
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, byte(i >> 16), byte(i >> 8), byte(i)},
				SpanID: trace.SpanID{1, byte(i >> 16), byte(i >> 8), byte(i)}, TraceFlags: trace.FlagsSampled})
			m.Headers = []kafka.Header{{Key: "traceparent", Value: kafka.Traceparent(sc)}}
		}
		batch = append(batch, m)
		if len(batch) == cap(batch) || i == n-1 {
			if err := src.Write(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	_ = src.Close()
	tileOut, err := kafka.NewKeyedWriter(ctx, brokers, tiles.Topic)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tileOut.Close() }()
	routedOut, err := kafka.NewProducer(RoutedProducerConfig(brokers))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = routedOut.Close() }()
	b.ResetTimer()
	start, cpu0 := time.Now(), testutil.ProcessCPU(b)
	// Both stages flush (and commit) every 50k events and not by time, so
	// the tiles emitted per event do not depend on how fast the run is.
	p := startTracedProcess(b, ctx, brokers, views, routedOut, tileOut, 50000, time.Minute, nil, tracing.tracer)
	testutil.Eventually(b, 10*time.Minute, "all events consumed", func() error {
		return caughtUp(ctx, brokers, 4, []*RouteHandler{p.route}, []*Aggregator{p.agg})
	})
	if srcErr, aggErr := p.stop(); srcErr != nil || aggErr != nil {
		b.Fatalf("source stage %v, aggregation stage %v", srcErr, aggErr)
	}
	el, cpu := time.Since(start), testutil.ProcessCPU(b)-cpu0
	b.StopTimer()
	if got := p.eng.C.Records.Load(); got != int64(n) {
		b.Fatalf("%d records routed, want %d", got, n)
	}
	if inv := p.eng.C.Invalid.Load(); inv != 0 {
		b.Fatalf("%d invalid records", inv)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "events/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(p.eng.C.Emitted.Load())/float64(n), "tiles/event")
}

func TestMain(m *testing.M) {
	if testutil.ServeChildBroker() {
		return
	}
	testutil.VerifyNoLeaks(m)
}

// BenchmarkRouteHandle is the source stage's per-record work as the
// consumer drives it (its sampled check when tracing, then Handle) on
// click events without a sampled trace: off has no tracer, unsampled one
// (every record carrying an unsampled traceparent). The difference is
// what tracing costs an unsampled record.
func BenchmarkRouteHandle(b *testing.B) {
	view, err := featurespec.Parse("bench.yaml", []byte(crashView))
	if err != nil {
		b.Fatal(err)
	}
	views := []*featurespec.View{view}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	gen := clicks(t0)
	rng := rand.New(rand.NewPCG(1, 2))
	tp := kafka.Traceparent(trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}}))
	msgs := make([]kafka.Message, 4096)
	for i := range msgs {
		k, v := gen(rng, i)
		msgs[i] = kafka.Message{Topic: "events.clicks", Key: []byte(k), Value: v, Offset: int64(i),
			Headers: []kafka.Header{{Key: "traceparent", Value: tp}}}
	}
	tracer := sdktrace.NewTracerProvider().Tracer("bench")
	for _, c := range []struct {
		name   string
		tracer trace.Tracer
	}{{"off", nil}, {"unsampled", tracer}} {
		b.Run(c.name, func(b *testing.B) {
			eng, err := aggregate.New(views)
			if err != nil {
				b.Fatal(err)
			}
			router, err := aggregate.NewRouter(views, &eng.C)
			if err != nil {
				b.Fatal(err)
			}
			h := NewRouteHandler(router, &eng.C, nil, RouteConfig{Partitions: repartitions, BatchSize: RoutedBatchSize, Tracer: c.tracer})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			i := 0
			cpu0 := testutil.ProcessCPU(b)
			for b.Loop() {
				m := msgs[i%len(msgs)]
				if c.tracer != nil && kafka.Sampled(&m) {
					b.Fatal("record sampled")
				}
				if err := h.Handle(ctx, m); err != nil {
					b.Fatal(err)
				}
				if i++; i%len(msgs) == 0 {
					// What Flush does without writing: drop the batch records.
					for p := range h.parts {
						h.parts[p].seal()
						clear(h.parts[p].sealed)
						h.parts[p].sealed = h.parts[p].sealed[:0]
					}
				}
			}
			// CPU per record: on a loaded machine ns/op includes waiting.
			b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
