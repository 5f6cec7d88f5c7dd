package featurizer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles/tiletest"
	"github.com/tributary-ml/tributary/services/featurizer"
)

// scaleView reads CDC transactions, keyed by txn_id, per user: a source
// not keyed by the view's entity, so one user's changes arrive on every
// source partition.
const scaleView = `
name: txns
entity: {name: user, join_keys: [user_id]}
source: {topic: cdc.public.transactions, format: debezium, event_time: created_at, allowed_lateness: 20m}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: sum_1h, column: amount, aggregation: sum, window: 1h}
  - {name: max_24h, column: amount, aggregation: max, window: 24h}
  - {name: merchants_24h, column: merchant_id, aggregation: approx_distinct, window: 24h}
  - {name: p90_1h, column: amount, aggregation: p90, window: 1h}
  - {name: last_amount, column: amount, aggregation: latest}
`

// TestTwoInstancesRebalanceToTheTilesOfOne runs (30k events) two featurizers in one
// consumer group: the first alone, then a second joins mid-stream (the
// partitions are split between them), then the first stops (the second
// takes them all over), with events arriving throughout. The final tiles
// on features.tiles must be exactly those of one instance that saw every
// event and never stopped.
func TestTwoInstancesRebalanceToTheTilesOfOne(t *testing.T) {
	if testing.Short() {
		t.Skip("30k events through two featurizers")
	}
	const (
		chunk  = 10_000
		users  = 400
		repart = 6
	)
	broker := testutil.Kafka(t, 2)
	dir := writeViews(t, map[string]string{"txns.yaml": scaleView})
	rng := rand.New(rand.NewPCG(3, 4))
	// Event time advances 90ms per transaction (45 minutes in all, so the
	// first 10m tiles expire); amounts are whole so sums are exact in any
	// order. Inserts only: one user's changes arrive on both source
	// partitions, so their order differs from run to run, and after a
	// retraction min and max depend on that order (see featurespec).
	id := 0
	events := func(n int) []kafka.Message {
		var out []kafka.Message
		for range n {
			id++
			row := map[string]any{"txn_id": id, "user_id": fmt.Sprint("u", rng.IntN(users)), "merchant_id": fmt.Sprint("m", rng.IntN(50)),
				"amount": fmt.Sprint(1 + rng.IntN(500)), "created_at": time.UnixMilli(base + int64(id)*90).UTC().Format(time.RFC3339Nano)}
			out = append(out, cdcMsg(t, id, map[string]any{"op": "c", "after": row}))
		}
		return out
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, Topic: "cdc.public.transactions"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	ctx := testutil.Context(t, 3*time.Minute)
	write := func(msgs []kafka.Message) {
		t.Helper()
		if err := p.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}

	write(events(chunk))
	a := startScaled(t, broker, dir, repart)
	testutil.Eventually(t, time.Minute, "the first instance to emit tiles", func() error {
		if len(readTiles(t, broker)) == 0 {
			return errors.New("no tiles yet")
		}
		return nil
	})
	b := startScaled(t, broker, dir, repart)
	testutil.Eventually(t, time.Minute, "the partitions to be split between both instances", func() error {
		pa, pb := a.svc.Partitions(), b.svc.Partitions()
		if len(pa) == 0 || len(pb) == 0 || len(pa)+len(pb) != repart {
			return fmt.Errorf("first holds %v, second %v", pa, pb)
		}
		return nil
	})
	write(events(chunk))
	a.stop(t)
	testutil.Eventually(t, time.Minute, "the second instance to take every partition over", func() error {
		if pb := b.svc.Partitions(); len(pb) != repart {
			return fmt.Errorf("second holds %v", pb)
		}
		return nil
	})
	write(events(chunk))

	// The uninterrupted reference: every change once, in event time order
	// (the order a single instance reading both source partitions evenly
	// approximates within the allowed lateness).
	view, err := featurespec.Parse("txns.yaml", []byte(scaleView))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := aggregate.New([]*featurespec.View{view}, aggregate.WithPartitions(repart))
	if err != nil {
		t.Fatal(err)
	}
	var recs []aggregate.Record
	if _, err := kafka.ReadAll(ctx, []string{broker}, "cdc.public.transactions", func(m kafka.Message) error {
		recs = append(recs, aggregate.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, TimeMs: m.Time.UnixMilli(), Value: m.Value})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.SliceStable(recs, func(i, j int) bool { return txnID(t, recs[i]) < txnID(t, recs[j]) })
	for _, r := range recs {
		if err := ref.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ref.Flush(); err != nil {
		t.Fatal(err)
	}
	if ref.C.Late.Load() != 0 {
		t.Fatalf("the reference dropped %d late events", ref.C.Late.Load())
	}
	want := ref.Snapshot()
	testutil.Eventually(t, 2*time.Minute, "the tiles of one uninterrupted instance", func() error {
		return tiletest.Diff(want, readTiles(t, broker))
	})
	t.Logf("%d source records, %d live tiles", len(recs), len(want))
}

func startScaled(t *testing.T, broker, dir string, repart int) *running {
	t.Helper()
	return startWith(t, broker, dir, func(c *featurizer.Config) { c.RepartitionPartitions = repart })
}

func cdcMsg(t *testing.T, id int, env map[string]any) kafka.Message {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(fmt.Sprint(id)), Value: b}
}

func txnID(t *testing.T, r aggregate.Record) int {
	var env struct {
		After struct {
			ID int `json:"txn_id"`
		} `json:"after"`
	}
	if err := json.Unmarshal(r.Value, &env); err != nil {
		t.Fatal(err)
	}
	return env.After.ID
}
