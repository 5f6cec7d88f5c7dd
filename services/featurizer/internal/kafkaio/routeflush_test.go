package kafkaio

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles/tiletest"
)

// errInvalidRecord is Kafka's INVALID_RECORD, an error kafka-go does not
// retry.
const errInvalidRecord = 87

// TestFailedRouterFlushIsReplayedNotSkipped: the embedded broker rejects
// the first produce request to the repartition topic during a router
// flush that spans several batches per partition. The flush must fail
// (the source offsets stay uncommitted), and after the restart the replay
// of the source must give the aggregator exactly the tiles of a run
// without the failure. Had later batches of the failed partition landed,
// the aggregator would skip the replay of the lost batch as already
// applied (its tiles would hold later offsets of the same source
// partition) and the lost batch's records would be missing.
func TestFailedRouterFlushIsReplayedNotSkipped(t *testing.T) {
	const (
		events = 4000
		parts  = 2
		batch  = 20   // batch records per write
		record = 1024 // bytes per batch record: ~18 changes
	)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	ctx := testutil.Context(t, 2*time.Minute)
	view, err := featurespec.Parse("crash.yaml", []byte(crashView))
	if err != nil {
		t.Fatal(err)
	}
	views := []*featurespec.View{view}
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: "events.clicks", Partitions: 1},
		kafka.TopicSpec{Name: aggregate.RepartitionTopic, Partitions: parts}); err != nil {
		t.Fatal(err)
	}

	// One source partition, 30 users: every repartition partition gets
	// many batches of records of the same source partition and entities.
	src, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: "events.clicks", BatchSize: events})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	msgs := make([]kafka.Message, 0, events)
	for i := range events {
		u := fmt.Sprint("u", rng.IntN(30))
		v, _ := json.Marshal(map[string]any{"user_id": u, "ts": t0 + int64(i)*100, "x": rng.IntN(1000), "page": fmt.Sprint("p", rng.IntN(50))})
		msgs = append(msgs, kafka.Message{Key: []byte(u), Value: v})
	}
	if err := src.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	var source []kafkago.Message
	if _, err := kafka.ReadAll(ctx, brokers, "events.clicks", func(m kafkago.Message) error {
		source = append(source, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(source) != events {
		t.Fatalf("read %d source records, want %d", len(source), events)
	}

	ref, err := aggregate.New(views, aggregate.WithPartitions(parts))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range source {
		_ = ref.Apply(aggregate.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, TimeMs: m.Time.UnixMilli(), Value: m.Value})
	}

	cfg := RoutedProducerConfig(brokers)
	cfg.BatchSize = batch
	routedOut, err := kafka.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = routedOut.Close() }()
	routeAll := func() *RouteHandler {
		var c aggregate.Counters
		router, err := aggregate.NewRouter(views, &c)
		if err != nil {
			t.Fatal(err)
		}
		h := NewRouteHandler(router, &c, routedOut, RouteConfig{Partitions: parts, BatchSize: batch, RecordBytes: record})
		for _, m := range source {
			if err := h.Handle(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}

	// The first produce request of the repartition topic fails; every
	// later one goes through.
	var rejected, produced atomic.Int64
	cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if len(pr.Topics) == 0 || pr.Topics[0].Topic != aggregate.RepartitionTopic {
			return nil, nil, false
		}
		produced.Add(1)
		if rejected.Load() > 0 {
			return nil, nil, false
		}
		rejected.Add(1)
		return testutil.ProduceErrorResponse(pr, errInvalidRecord), nil, true
	})

	if err := routeAll().Flush(ctx); err == nil {
		t.Fatal("router flush returned nil although the broker rejected a batch")
	} else {
		t.Logf("first flush: %v", err)
	}
	if rejected.Load() != 1 {
		t.Fatalf("%d produce requests rejected, want 1", rejected.Load())
	}
	// The source offsets were not committed: a restarted router routes
	// every source record again.
	if err := routeAll().Flush(ctx); err != nil {
		t.Fatalf("flush after the restart: %v", err)
	}
	t.Logf("%d produce requests to %s", produced.Load(), aggregate.RepartitionTopic)

	eng, err := aggregate.New(views)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kafka.ReadAll(ctx, brokers, aggregate.RepartitionTopic, func(m kafkago.Message) error {
		_, err := eng.ApplyRouted(int32(m.Partition), m.Value)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if eng.C.Duplicates.Load() == 0 {
		t.Fatal("no routed record was skipped as a duplicate: the replay did not overlap the first flush")
	}
	if err := tiletest.Diff(ref.Snapshot(), eng.Snapshot()); err != nil {
		t.Fatal(err)
	}
}
