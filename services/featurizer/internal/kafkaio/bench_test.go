package kafkaio

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featurizer/internal/core"
)

// BenchmarkEndToEnd: b.N click events already on the embedded broker
// (4 partitions, 10k users) are consumed by the featurizer's source stage,
// routed through the repartition topic (acks=all), aggregated, and their
// tiles written to features.tiles with acks=all; the clock stops when
// every routed record is aggregated and the last flush is written.
//
// The broker runs in a child process, as Kafka runs elsewhere in
// production, so this process is the featurizer (both stages) alone:
// events/s is the wall-clock rate (GOMAXPROCS cores, shared with the
// broker), events/cpu-s the events per second of CPU time this process
// used (user + system), that is per core, the figure of DESIGN.md §6.
func BenchmarkEndToEnd(b *testing.B) {
	n := max(b.N, 1000)
	broker := testutil.KafkaProcess(b, 4)
	brokers := []string{broker}
	ctx := testutil.Context(b, 10*time.Minute)
	view, err := featurespec.Parse("bench.yaml", []byte(crashView))
	if err != nil {
		b.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: "events.clicks", Partitions: 4}, kafka.TopicSpec{Name: tiles.Topic, Partitions: 4, Compacted: true},
		kafka.TopicSpec{Name: core.RepartitionTopic, Partitions: repartitions}); err != nil {
		b.Fatal(err)
	}
	src, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: "events.clicks", BatchSize: 10000})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	batch := make([]kafka.Message, 0, 20000)
	for i := 0; i < n; i++ {
		u := fmt.Sprint("u", rng.IntN(10000))
		v, _ := json.Marshal(map[string]any{"user_id": u, "ts": t0 + int64(i)*5, "x": rng.IntN(1000), "page": fmt.Sprint("p", rng.IntN(300))})
		batch = append(batch, kafka.Message{Key: []byte(u), Value: v})
		if len(batch) == cap(batch) || i == n-1 {
			if err := src.Write(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	_ = src.Close()
	tileOut, err := kafka.NewProducer(TileProducerConfig(brokers))
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
	p := startProcess(b, ctx, brokers, []*featurespec.View{view}, routedOut, tileOut, 50000, time.Minute, nil)
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
	b.ReportMetric(float64(n)/el.Seconds(), "events/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(p.eng.C.Emitted.Load())/float64(n), "tiles/event")
}

func TestMain(m *testing.M) {
	if testutil.ServeChildBroker() {
		return
	}
	os.Exit(m.Run())
}
