package kafkaio

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featurizer/internal/core"
)

// BenchmarkEndToEnd: b.N click events already on the embedded broker
// (4 partitions, 10k users) are consumed by the featurizer's consumer,
// aggregated, and their tiles written to features.tiles with acks=all;
// the clock stops when every partition is consumed and the last flush is
// written. events/s is per process (GOMAXPROCS cores; the broker runs in
// the same process).
func BenchmarkEndToEnd(b *testing.B) {
	n := max(b.N, 1000)
	broker := testutil.Kafka(b, 4)
	brokers := []string{broker}
	ctx := testutil.Context(b, 10*time.Minute)
	view, err := featurespec.Parse("bench.yaml", []byte(crashView))
	if err != nil {
		b.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: "events.clicks", Partitions: 4}, kafka.TopicSpec{Name: tiles.Topic, Partitions: 4, Compacted: true}); err != nil {
		b.Fatal(err)
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: "events.clicks", BatchSize: 10000})
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
			if err := p.Write(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	_ = p.Close()
	out, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: tiles.Topic, BatchSize: 10000})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = out.Close() }()
	eng, err := core.New([]*featurespec.View{view})
	if err != nil {
		b.Fatal(err)
	}
	h := NewHandler(eng, out, nil)
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: "bench", Topics: []string{"events.clicks"},
		CommitInterval: 200 * time.Millisecond, CommitEvery: 50000})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx, h) }()
	testutil.Eventually(b, 10*time.Minute, "all events consumed", func() error {
		if got := eng.C.Records.Load(); got < int64(n) {
			return fmt.Errorf("%d of %d records", got, n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/el.Seconds(), "events/s")
	b.ReportMetric(float64(eng.C.Emitted.Load())/float64(n), "tiles/event")
}
