package kafkaio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/libs/tiles/tiletest"
)

const crashView = `
name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts, allowed_lateness: 1m}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: sum_1h, column: x, aggregation: sum, window: 1h}
  - {name: max_24h, column: x, aggregation: max, window: 24h}
  - {name: pages_24h, column: page, aggregation: approx_distinct, window: 24h}
  - {name: p90_1h, column: x, aggregation: p90, window: 1h}
  - {name: last_page, column: page, aggregation: latest}
`

var errCrash = errors.New("injected crash")

// repartitions is the repartition topic's partition count in these tests.
const repartitions = 6

// crashHandler fails after a number of records, like a process killed
// between two commits (what it handled since the last flush is lost); it
// first arms the process's tile writer so that the aggregator's next flush
// is cut short too.
type crashHandler struct {
	*RouteHandler
	left    int
	inFlush *crashWriter
}

func (c *crashHandler) Handle(ctx context.Context, m kafka.Message) error {
	if c.left == 0 {
		c.inFlush.arm()
		return errCrash
	}
	c.left--
	return c.RouteHandler.Handle(ctx, m)
}

// crashWriter writes only a prefix of one flush and then fails, like a
// process killed while emitting tiles: some tiles of the flush are on the
// topic, the offsets are not committed.
type crashWriter struct {
	mu    sync.Mutex
	w     Writer
	armed bool
	keep  int
}

func (c *crashWriter) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = true
}

func (c *crashWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		n := min(c.keep, len(msgs))
		if err := c.w.Write(ctx, msgs[:n]...); err != nil {
			return err
		}
		return errCrash
	}
	return c.w.Write(ctx, msgs...)
}

// process is one featurizer process of a test: the source stage (a
// consumer group routing source records to the repartition topic) and the
// aggregation stage.
type process struct {
	eng     *aggregate.Engine
	route   *RouteHandler
	agg     *Aggregator
	cancel  context.CancelFunc
	srcDone chan error
	aggDone chan error
}

func startProcess(t testing.TB, ctx context.Context, brokers []string, views []*featurespec.View, routedOut, tileOut Writer, flushEvery int, flushInterval time.Duration, wrap func(*RouteHandler) kafka.Handler) *process {
	t.Helper()
	return startTracedProcess(t, ctx, brokers, views, routedOut, tileOut, flushEvery, flushInterval, wrap, nil)
}

// startTracedProcess is startProcess with both stages and the source
// consumer tracing with tr (nil: no spans).
func startTracedProcess(t testing.TB, ctx context.Context, brokers []string, views []*featurespec.View, routedOut, tileOut Writer, flushEvery int, flushInterval time.Duration, wrap func(*RouteHandler) kafka.Handler, tr trace.Tracer) *process {
	t.Helper()
	eng, err := aggregate.New(views)
	if err != nil {
		t.Fatal(err)
	}
	router, err := aggregate.NewRouter(views, &eng.C)
	if err != nil {
		t.Fatal(err)
	}
	p := &process{eng: eng, srcDone: make(chan error, 1), aggDone: make(chan error, 1)}
	p.route = NewRouteHandler(router, &eng.C, routedOut, RouteConfig{Partitions: repartitions, BatchSize: RoutedBatchSize, Tracer: tr})
	if p.agg, err = NewAggregator(AggregatorConfig{Brokers: brokers, GroupID: "agg", Topic: aggregate.RepartitionTopic, TilesTopic: tiles.Topic,
		FlushInterval: flushInterval, FlushEvery: flushEvery, Tracer: tr}, eng, tileOut); err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: "route", Topics: eng.Topics(),
		CommitInterval: flushInterval, CommitEvery: flushEvery, IgnoreTrace: true, Tracer: tr})
	if err != nil {
		t.Fatal(err)
	}
	var h kafka.Handler = p.route
	if wrap != nil {
		h = wrap(p.route)
	}
	cctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	go func() { p.srcDone <- c.Run(cctx, h) }()
	go func() { p.aggDone <- p.agg.Run(cctx) }()
	return p
}

// stop cancels both stages and returns their errors.
func (p *process) stop() (src, agg error) {
	p.cancel()
	return <-p.srcDone, <-p.aggDone
}

// caughtUp reports nil once every source partition is consumed and the
// aggregators between them have applied every routed record.
func caughtUp(ctx context.Context, brokers []string, srcParts int, routes []*RouteHandler, aggs []*Aggregator) error {
	seen := map[PartitionKey]int64{}
	for _, r := range routes {
		for k, v := range r.Lag() {
			if old, ok := seen[k]; !ok || v < old {
				seen[k] = v
			}
		}
	}
	if len(seen) < srcParts {
		// A partition the last incarnation had nothing left to read on (its
		// predecessor committed all of it) reports no lag: compare the
		// router group's committed offset with the partition's end instead.
		if err := fillCommittedLag(ctx, brokers, seen); err != nil {
			return err
		}
	}
	if len(seen) < srcParts {
		return fmt.Errorf("source lag known for %d of %d partitions", len(seen), srcParts)
	}
	for k, v := range seen {
		if v != 0 {
			return fmt.Errorf("%s/%d lags %d", k.Topic, k.Partition, v)
		}
	}
	ends, err := endOffsets(ctx, brokers, aggregate.RepartitionTopic)
	if err != nil {
		return err
	}
	pos := map[int32]int64{}
	for _, a := range aggs {
		for p, o := range a.Positions() {
			pos[p] = max(pos[p], o)
		}
	}
	for p, end := range ends {
		if pos[int32(p)] != end {
			return fmt.Errorf("%s/%d: aggregated up to %d of %d", aggregate.RepartitionTopic, p, pos[int32(p)], end)
		}
	}
	return nil
}

// fillCommittedLag adds, for the source partitions missing from seen, the
// lag of the router group "route" on events.clicks from its committed offsets.
func fillCommittedLag(ctx context.Context, brokers []string, seen map[PartitionKey]int64) error {
	const topic = "events.clicks"
	ends, err := endOffsets(ctx, brokers, topic)
	if err != nil {
		return err
	}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...)}
	resp, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: "route", Topics: map[string][]int{topic: parts}})
	if err != nil {
		return err
	}
	for _, op := range resp.Topics[topic] {
		k := PartitionKey{Topic: topic, Partition: op.Partition}
		if _, ok := seen[k]; ok || op.Error != nil || op.CommittedOffset < 0 {
			continue
		}
		seen[k] = ends[op.Partition] - op.CommittedOffset
	}
	return nil
}

func endOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(topic)
	_ = conn.Close()
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, p := range parts {
		lc, err := d.DialLeader(ctx, "tcp", fmt.Sprintf("%s:%d", p.Leader.Host, p.Leader.Port), topic, p.ID)
		if err != nil {
			return nil, err
		}
		end, err := lc.ReadLastOffset()
		_ = lc.Close()
		if err != nil {
			return nil, err
		}
		out[p.ID] = end
	}
	return out, nil
}

// liveTiles reads features.tiles to its end: the last state of each key.
func liveTiles(t testing.TB, ctx context.Context, brokers []string) map[string]*tiles.Tile {
	t.Helper()
	got := map[string]*tiles.Tile{}
	if _, err := kafka.ReadAll(ctx, brokers, tiles.Topic, func(m kafkago.Message) error {
		if m.Value == nil {
			delete(got, string(m.Key))
			return nil
		}
		tl, err := tiles.Decode(m.Value)
		if err != nil {
			return err
		}
		if tl.Key() != string(m.Key) {
			return fmt.Errorf("tile under key %s says it is %s", m.Key, tl.Key())
		}
		got[string(m.Key)] = tl
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCrashAtRandomPointsEndsWithTheSameTiles stops the featurizer at
// random points of a 200k-event stream (between commits, and in the middle
// of emitting a flush), restarts it from features.tiles and the committed
// offsets each time, and compares the final tiles with a run that never
// stopped.
func TestCrashAtRandomPointsEndsWithTheSameTiles(t *testing.T) {
	if testing.Short() {
		t.Skip("200k events through Kafka")
	}
	const events = 200_000
	broker := testutil.Kafka(t, 4)
	brokers := []string{broker}
	ctx := testutil.Context(t, 5*time.Minute)
	view, err := featurespec.Parse("crash.yaml", []byte(crashView))
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: "events.clicks", Partitions: 4}, kafka.TopicSpec{Name: tiles.Topic, Partitions: 4, Compacted: true},
		kafka.TopicSpec{Name: aggregate.RepartitionTopic, Partitions: repartitions}); err != nil {
		t.Fatal(err)
	}

	// Produce: 2000 users, event time advancing 60ms per event (200k events
	// span 3h20m, so 10m and 1h tiles expire along the way), up to 50s late.
	rng := rand.New(rand.NewPCG(7, 8))
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: "events.clicks", BatchSize: 5000})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	batch := make([]kafka.Message, 0, 10000)
	for i := 0; i < events; i++ {
		u := fmt.Sprint("u", rng.IntN(2000))
		v, _ := json.Marshal(map[string]any{"user_id": u, "ts": t0 + int64(i)*60 - rng.Int64N(50_000), "x": rng.IntN(1000), "page": fmt.Sprint("p", rng.IntN(300))})
		batch = append(batch, kafka.Message{Key: []byte(u), Value: v})
		if len(batch) == cap(batch) {
			if err := p.Write(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// The uninterrupted reference: every record once, in partition order.
	ref, err := aggregate.New([]*featurespec.View{view}, aggregate.WithPartitions(repartitions))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kafka.ReadAll(ctx, brokers, "events.clicks", func(m kafkago.Message) error {
		_ = ref.Apply(aggregate.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, TimeMs: m.Time.UnixMilli(), Value: m.Value})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Flush(); err != nil {
		t.Fatal(err)
	}
	if ref.C.Records.Load() != events {
		t.Fatalf("reference saw %d records, want %d", ref.C.Records.Load(), events)
	}

	tileOut, err := kafka.NewKeyedWriter(ctx, brokers, tiles.Topic)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tileOut.Close() }()
	routedOut, err := kafka.NewProducer(RoutedProducerConfig(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = routedOut.Close() }()

	crashes := 0
	for incarnation := 0; ; incarnation++ {
		w := &crashWriter{w: tileOut, keep: rng.IntN(3000)}
		// Six crashes of at most 30k records each cannot reach the end of
		// the 200k records, so each of them happens.
		if incarnation < 6 {
			left := 2000 + rng.IntN(28000)
			p := startProcess(t, ctx, brokers, []*featurespec.View{view}, routedOut, w, 7000, 100*time.Millisecond, func(h *RouteHandler) kafka.Handler {
				return &crashHandler{RouteHandler: h, left: left, inFlush: w}
			})
			select {
			case err := <-p.srcDone:
				p.srcDone <- err
			case <-time.After(2 * time.Minute):
				t.Fatalf("incarnation %d did not crash within 2 minutes", incarnation)
			}
			srcErr, aggErr := p.stop()
			if !errors.Is(srcErr, errCrash) {
				t.Fatalf("incarnation %d: source stage ended with %v, want the injected crash", incarnation, srcErr)
			}
			if aggErr != nil && !errors.Is(aggErr, errCrash) {
				t.Fatalf("incarnation %d: aggregation stage ended with %v", incarnation, aggErr)
			}
			crashes++
			continue
		}
		p := startProcess(t, ctx, brokers, []*featurespec.View{view}, routedOut, w, 7000, 100*time.Millisecond, nil)
		testutil.Eventually(t, 3*time.Minute, "the last incarnation to catch up", func() error {
			select {
			case err := <-p.aggDone:
				p.aggDone <- err
				return fmt.Errorf("aggregator stopped: %v", err)
			default:
			}
			return caughtUp(ctx, brokers, 4, []*RouteHandler{p.route}, []*Aggregator{p.agg})
		})
		if srcErr, aggErr := p.stop(); srcErr != nil || aggErr != nil {
			t.Fatalf("last incarnation: source stage %v, aggregation stage %v", srcErr, aggErr)
		}
		break
	}

	got := liveTiles(t, ctx, brokers)
	want := ref.Snapshot()
	t.Logf("%d crashes; %d live tiles in the reference, %d on the topic", crashes, len(want), len(got))
	if crashes < 6 {
		t.Fatalf("only %d crashes were injected", crashes)
	}
	if err := tiletest.Diff(want, got); err != nil {
		t.Fatal(err)
	}
}
