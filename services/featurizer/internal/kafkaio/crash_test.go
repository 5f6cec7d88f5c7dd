package kafkaio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featurizer/internal/core"
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

// crashHandler fails after a number of records, like a process killed
// between two commits (what it handled since the last flush is lost), or,
// with inFlush, arms its writer so that the next flush is cut short.
type crashHandler struct {
	*Handler
	left    int
	inFlush *crashWriter
}

func (c *crashHandler) Handle(ctx context.Context, m kafka.Message) error {
	if c.left == 0 {
		if c.inFlush == nil {
			return errCrash
		}
		c.inFlush.arm()
	}
	c.left--
	return c.Handler.Handle(ctx, m)
}

// crashWriter writes only a prefix of one flush and then fails, like a
// process killed while emitting tiles: some tiles of the flush are on the
// topic, the source offsets are not committed.
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
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: "events.clicks", Partitions: 4}, kafka.TopicSpec{Name: tiles.Topic, Partitions: 4, Compacted: true}); err != nil {
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
	ref, err := core.New([]*featurespec.View{view})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAll(ctx, brokers, "events.clicks", func(m kafkago.Message) error {
		_ = ref.Apply(core.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, TimeMs: m.Time.UnixMilli(), Value: m.Value})
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

	out, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: tiles.Topic, BatchSize: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = out.Close() }()

	crashes := 0
	for incarnation := 0; ; incarnation++ {
		eng, err := core.New([]*featurespec.View{view})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(ctx, brokers, tiles.Topic, eng, nil); err != nil {
			t.Fatal(err)
		}
		w := &crashWriter{w: out, keep: rng.IntN(3000)}
		h := NewHandler(eng, w, nil)
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		// Six crashes of at most 30k records each cannot reach the end of
		// the 200k records, so each of them happens.
		last := incarnation >= 6
		var handler kafka.Handler = h
		if !last {
			ch := &crashHandler{Handler: h, left: 2000 + rng.IntN(28000)}
			if incarnation%2 == 1 {
				ch.inFlush = w
			}
			handler = ch
		}
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: "crash", Topics: []string{"events.clicks"},
			CommitInterval: 100 * time.Millisecond, CommitEvery: 7000})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx, handler) }()
		if !last {
			select {
			case err := <-done:
				cancel()
				if !errors.Is(err, errCrash) {
					t.Fatalf("incarnation %d ended with %v, want the injected crash", incarnation, err)
				}
				crashes++
				continue
			case <-time.After(2 * time.Minute):
				cancel()
				t.Fatalf("incarnation %d did not crash within 2 minutes", incarnation)
			}
		}
		testutil.Eventually(t, 3*time.Minute, "the last incarnation to catch up", func() error {
			select {
			case err := <-done:
				done <- err
				return fmt.Errorf("consumer stopped: %v", err)
			default:
			}
			lag := h.Lag()
			if len(lag) < 4 {
				return fmt.Errorf("lag known for %d of 4 partitions", len(lag))
			}
			for k, v := range lag {
				if v != 0 {
					return fmt.Errorf("%s/%d lags %d", k.Topic, k.Partition, v)
				}
			}
			return nil
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		break
	}

	got := map[string]*tiles.Tile{}
	if _, err := ReadAll(ctx, brokers, tiles.Topic, func(m kafkago.Message) error {
		if m.Value == nil {
			delete(got, string(m.Key))
			return nil
		}
		tl, err := tiles.Decode(m.Value)
		if err != nil {
			return err
		}
		got[string(m.Key)] = tl
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := ref.Snapshot()
	t.Logf("%d crashes; %d live tiles in the reference, %d on the topic", crashes, len(want), len(got))
	if crashes < 6 {
		t.Fatalf("only %d crashes were injected", crashes)
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		w, g := want[k], got[k]
		var wb, gb []byte
		if w != nil {
			wb, _ = json.Marshal(w)
		}
		if g != nil {
			gb, _ = json.Marshal(g)
		}
		if string(wb) != string(gb) {
			bad++
			if bad <= 3 {
				t.Errorf("tile %s:\nuninterrupted %s\nafter crashes %s", k, wb, gb)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d tiles differ", bad, len(keys))
	}
}
