package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/config"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/libs/tiles/served"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featurizer"
	"github.com/tributary-ml/tributary/services/offline"
)

// The views of the equality test: between them every aggregation of
// featurespec.Aggregations(), a filter, lateness, JSON and Debezium
// sources (inserts, updates, deletes).
const eqClicksView = `name: eq_clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.eq_clicks, format: json, event_time: ts, allowed_lateness: 2m, filter: "kind != 'bot'"}
max_age: 12m
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: amount_sum_10m, column: amount, aggregation: sum, window: 10m}
  - {name: amount_avg_1h, column: amount, aggregation: avg, window: 1h}
  - {name: amount_min_1h, column: amount, aggregation: min, window: 1h}
  - {name: amount_max_1h, column: amount, aggregation: max, window: 1h}
  - {name: amount_std_1h, column: amount, aggregation: stddev, window: 1h}
  - {name: page_first_1h, column: page, aggregation: first, window: 1h}
  - {name: page_last_10m, column: page, aggregation: last, window: 10m}
  - {name: pages_1h, column: page, aggregation: approx_distinct, window: 1h}
  - {name: amount_p50_1h, column: amount, aggregation: p50, window: 1h}
  - {name: amount_p90_1h, column: amount, aggregation: p90, window: 1h}
  - {name: amount_p95_10m, column: amount, aggregation: p95, window: 10m}
  - {name: amount_p99_1h, column: amount, aggregation: p99, window: 1h}
  - {name: page, column: page, aggregation: latest}
`

const eqAccountsView = `name: eq_accounts
entity: {name: user, join_keys: [user_id]}
source: {topic: cdc.public.eq_accounts, format: debezium, event_time: updated_at, allowed_lateness: 2m, filter: "balance >= 0"}
max_age: 30m
features:
  - {name: n_1h, aggregation: count, window: 1h}
  - {name: balance_sum_1h, column: balance, aggregation: sum, window: 1h}
  - {name: balance_avg_10m, column: balance, aggregation: avg, window: 10m}
  - {name: balance_std_1h, column: balance, aggregation: stddev, window: 1h}
  - {name: balance_p90_1h, column: balance, aggregation: p90, window: 1h}
  - {name: balance_max_1h, column: balance, aggregation: max, window: 1h}
  - {name: tier, column: tier, aggregation: latest}
`

type eqClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *eqClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *eqClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// TestTrainingSetEqualsServedValues is the offline half's equality
// property: random streams go through the real featurizer and
// featureserver; at chosen instants, once everything that arrived by then
// is served, GetOnlineFeatures is asked (the featureserver's clock set to
// the instant); then the records are read back from Kafka with their
// record times and the training set for the same (entity, instant) rows is
// computed offline. Every value, status and event time must be equal.
func TestTrainingSetEqualsServedValues(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TRIBUTARY_EQ_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (rerun with TRIBUTARY_EQ_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	ctx := testutil.Context(t, 4*time.Minute)
	broker := testutil.Kafka(t, 3)
	dir := t.TempDir()
	for name, body := range map[string]string{"clicks.yaml": eqClicksView, "accounts.yaml": eqAccountsView} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	views, err := featurespec.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, v := range views {
		for _, f := range v.Features {
			refs = append(refs, v.Ref(f))
		}
	}
	aggs := map[string]bool{}
	for _, v := range views {
		for _, f := range v.Features {
			aggs[f.Aggregation] = true
		}
	}
	for _, a := range featurespec.Aggregations() {
		if !aggs[a] {
			t.Fatalf("the test's views miss aggregation %s", a)
		}
	}

	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fzCfg := featurizer.DefaultConfig()
	fzCfg.Common = config.Common{KafkaBrokers: broker, AdminAddr: "127.0.0.1:0", LogLevel: "warn"}
	fzCfg.Features = dir
	fzCfg.FlushInterval = 20 * time.Millisecond
	fz, err := featurizer.New(ctx, fzCfg, featurizer.Deps{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	testutil.RunService(t, "featurizer", fz)

	base := time.UnixMilli(1_700_002_800_000) // on the hour
	clk := &eqClock{now: base}
	fsCfg := featureserver.DefaultConfig()
	fsCfg.Common.KafkaBrokers = broker
	fsCfg.Common.AdminAddr = "127.0.0.1:0"
	fsCfg.Common.GRPCAddr = "127.0.0.1:0"
	fsCfg.Features = dir
	fsCfg.DataDir = t.TempDir()
	fsCfg.FlushInterval = 20 * time.Millisecond
	fs, err := featureserver.New(ctx, fsCfg, featureserver.Deps{Log: log, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	testutil.RunService(t, "featureserver", fs)
	conn, err := grpc.NewClient(fs.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := featuresv1.NewFeatureServiceClient(conn)

	producer, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()

	users := []string{"u1", "u2", "u3", "u4", "u5", "u6"}
	queried := append(slices.Clone(users), "u_never")
	gen := newEqStream(rng, users, base.UnixMilli())
	const phases = 24
	const step = 3 * 60_000
	type answer struct {
		user string
		at   int64
		vals []string
	}
	var online []answer
	for k := 1; k <= phases; k++ {
		until := base.UnixMilli() + int64(k)*step
		msgs := gen.until(until)
		if len(msgs) > 0 {
			if err := producer.Write(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
		}
		waitServed(t, ctx, broker, []string{"events.eq_clicks", "cdc.public.eq_accounts"})
		clk.Set(time.UnixMilli(until))
		req := &featuresv1.GetOnlineFeaturesRequest{Features: refs}
		for _, u := range queried {
			req.Entities = append(req.Entities, &featuresv1.EntityRow{JoinKeys: map[string]string{"user_id": u}})
		}
		resp, err := client.GetOnlineFeatures(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i, u := range queried {
			a := answer{user: u, at: until}
			for _, fv := range resp.Results[i].Values {
				a.vals = append(a.vals, onlineString(fv))
			}
			online = append(online, a)
		}
	}
	if gen.late == 0 || gen.updates == 0 || gen.deletes == 0 || gen.bots == 0 {
		t.Fatalf("the stream lacks a case: %d late, %d updates, %d deletes, %d filtered", gen.late, gen.updates, gen.deletes, gen.bots)
	}

	// Offline, from the records as Kafka holds them.
	var history offline.HistoryRecords
	for _, topic := range []string{"events.eq_clicks", "cdc.public.eq_accounts"} {
		var recs []aggregate.Record
		if _, err := kafka.ReadAll(ctx, []string{broker}, topic, func(m kafka.Message) error {
			recs = append(recs, aggregate.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, TimeMs: m.Time.UnixMilli(), Value: slices.Clone(m.Value)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(recs, func(a, b aggregate.Record) int {
			return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
		})
		history = append(history, recs...)
	}
	spine := make(eqSpine, len(online))
	for i, a := range online {
		spine[i] = eqRow{a.user, a.at}
	}
	set, err := offline.ComputeTrainingSet(ctx, offline.TrainingSetRequest{Views: views, Refs: refs, Spine: spine, History: history})
	if err != nil {
		t.Fatal(err)
	}
	if set.Stats.Late == 0 {
		t.Fatal("offline replay dropped no late event: the stream does not exercise lateness")
	}
	var diffs []string
	present := 0
	for k, r := range set.Rows {
		a := online[r]
		for j, v := range set.Row(k) {
			off := offlineString(v)
			if v.Status == served.StatusPresent {
				present++
			}
			if off != a.vals[j] {
				diffs = append(diffs, fmt.Sprintf("entity %s, feature %s, instant %d (%s): online %s, offline %s",
					a.user, set.Features[j].Ref, a.at, time.UnixMilli(a.at).UTC().Format(time.RFC3339), a.vals[j], off))
			}
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("%d of %d values differ (seed %d); first ones:\n%s", len(diffs), len(set.Values), seed, strings.Join(diffs[:min(len(diffs), 25)], "\n"))
	}
	if present < len(set.Values)/3 {
		t.Fatalf("only %d of %d values are PRESENT: the stream is too thin to compare", present, len(set.Values))
	}
	t.Logf("%d values equal (%d present) over %d instants; %d records, %d late, %d updates, %d deletes, %d filtered",
		len(set.Values), present, phases, set.Stats.Records, set.Stats.Late, gen.updates, gen.deletes, gen.bots)
}

func onlineString(fv *featuresv1.FeatureValue) string {
	var val string
	switch x := fv.GetValue().GetKind().(type) {
	case *featuresv1.Value_DoubleValue:
		val = fmt.Sprintf("double:%v", x.DoubleValue)
	case *featuresv1.Value_Int64Value:
		val = fmt.Sprintf("int:%d", x.Int64Value)
	case *featuresv1.Value_StringValue:
		val = fmt.Sprintf("string:%q", x.StringValue)
	case *featuresv1.Value_BoolValue:
		val = fmt.Sprintf("bool:%v", x.BoolValue)
	}
	status := strings.TrimPrefix(fv.GetStatus().String(), "FEATURE_STATUS_")
	if status == "NOT_FOUND" {
		return status
	}
	var ev int64
	if fv.GetEventTime() != nil {
		ev = fv.GetEventTime().AsTime().UnixMilli()
	}
	return fmt.Sprintf("%s %s @%d", status, val, ev)
}

func offlineString(v served.Value) string {
	if v.Status == served.StatusNotFound {
		return "NOT_FOUND"
	}
	var val string
	switch v.Kind {
	case served.KindDouble:
		val = fmt.Sprintf("double:%v", v.Double)
	case served.KindInt64:
		val = fmt.Sprintf("int:%d", v.Int)
	case served.KindString:
		val = fmt.Sprintf("string:%q", v.Str)
	case served.KindBool:
		val = fmt.Sprintf("bool:%v", v.Bool)
	}
	return fmt.Sprintf("%s %s @%d", v.Status, val, v.EventMs)
}

type eqRow struct {
	user string
	at   int64
}

type eqSpine []eqRow

func (s eqSpine) Len() int            { return len(s) }
func (s eqSpine) EventMs(i int) int64 { return s[i].at }
func (s eqSpine) JoinKey(i int, key string) (string, bool) {
	if key != "user_id" {
		return "", false
	}
	return s[i].user, true
}

// eqStream generates the records: clicks (some late, some filtered out)
// and account changes (inserts, updates, deletes, some filtered out), each
// user's on one partition (keyed by user), record times strictly
// increasing and event times up to 7 minutes before them.
type eqStream struct {
	rng                          *rand.Rand
	users                        []string
	arrival                      int64
	accounts                     map[string]map[string]any
	late, updates, deletes, bots int
	wm                           map[string]int64
}

func newEqStream(rng *rand.Rand, users []string, start int64) *eqStream {
	return &eqStream{rng: rng, users: users, arrival: start, accounts: map[string]map[string]any{}, wm: map[string]int64{}}
}

// until returns the records arriving after the last call up to until
// (the last one exactly at until, so the instant's bound is inclusive).
func (g *eqStream) until(until int64) []kafka.Message {
	var out []kafka.Message
	n := 8 + g.rng.IntN(16)
	for i := range n {
		g.arrival += 1 + g.rng.Int64N(max(1, (until-g.arrival)/int64(n-i)))
		if i == n-1 || g.arrival > until {
			g.arrival = until
		}
		u := g.users[g.rng.IntN(len(g.users))]
		ts := g.arrival - g.rng.Int64N(420_000)
		if g.rng.IntN(3) > 0 {
			out = append(out, g.click(u, ts))
		} else {
			out = append(out, g.account(u, ts))
		}
		if g.arrival == until {
			break
		}
	}
	return out
}

func (g *eqStream) click(u string, ts int64) kafka.Message {
	kind := "human"
	if g.rng.IntN(8) == 0 {
		kind = "bot"
		g.bots++
	} else {
		if ts < g.wm[u]-120_000 {
			g.late++
		}
		g.wm[u] = max(g.wm[u], ts)
	}
	amount := float64(g.rng.IntN(100000))/100 - 50
	b, _ := json.Marshal(map[string]any{"user_id": u, "ts": ts, "amount": amount, "page": fmt.Sprintf("/p%d", g.rng.IntN(20)), "kind": kind})
	return kafka.Message{Topic: "events.eq_clicks", Key: []byte(u), Value: b, Time: time.UnixMilli(g.arrival)}
}

func (g *eqStream) account(u string, ts int64) kafka.Message {
	before := g.accounts[u]
	after := map[string]any{"user_id": u, "updated_at": ts, "balance": float64(g.rng.IntN(200000))/100 - 100, "tier": []string{"gold", "silver", "bronze"}[g.rng.IntN(3)]}
	op := "c"
	switch {
	case before != nil && g.rng.IntN(5) == 0:
		op, after = "d", nil
		g.deletes++
	case before != nil:
		op = "u"
		g.updates++
	}
	g.accounts[u] = after
	env := map[string]any{"op": op, "ts_ms": g.arrival, "source": map[string]any{"ts_ms": g.arrival}}
	if before != nil {
		env["before"] = before
	}
	if after != nil {
		env["after"] = after
	}
	b, _ := json.Marshal(env)
	return kafka.Message{Topic: "cdc.public.eq_accounts", Key: []byte(u), Value: b, Time: time.UnixMilli(g.arrival)}
}

// waitServed waits until every record on topics went through the
// featurizer (source and aggregation stages committed to the end) and
// every tile it wrote is stored by the featureserver (its group committed
// to the end of features.tiles). Each stage commits only after its output
// is written, and each end is read after the previous stage caught up.
func waitServed(t *testing.T, ctx context.Context, broker string, topics []string) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 10 * time.Second}
	stages := []struct {
		group  string
		topics []string
	}{
		{featurizer.GroupID, topics},
		{featurizer.AggregateGroupID, []string{aggregate.RepartitionTopic}},
		{featureserver.GroupID, []string{tiles.Topic}},
	}
	for _, st := range stages {
		testutil.Eventually(t, 60*time.Second, fmt.Sprintf("consumer group %s caught up on %v", st.group, st.topics), func() error {
			return caughtUp(ctx, client, st.group, st.topics)
		})
	}
}

func caughtUp(ctx context.Context, client *kafkago.Client, group string, topics []string) error {
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		return err
	}
	parts := map[string][]int{}
	ends := map[string][]kafkago.OffsetRequest{}
	for _, tp := range meta.Topics {
		if tp.Error != nil {
			return fmt.Errorf("topic %s: %w", tp.Name, tp.Error)
		}
		for _, p := range tp.Partitions {
			parts[tp.Name] = append(parts[tp.Name], p.ID)
			ends[tp.Name] = append(ends[tp.Name], kafkago.LastOffsetOf(p.ID))
		}
	}
	lo, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: ends})
	if err != nil {
		return err
	}
	of, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return err
	}
	committed := map[string]map[int]int64{}
	for topic, ps := range of.Topics {
		committed[topic] = map[int]int64{}
		for _, p := range ps {
			committed[topic][p.Partition] = p.CommittedOffset
		}
	}
	for topic, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return fmt.Errorf("%s/%d: %w", topic, p.Partition, p.Error)
			}
			if c := committed[topic][p.Partition]; p.LastOffset > 0 && c < p.LastOffset {
				return fmt.Errorf("%s/%d: committed %d, end %d", topic, p.Partition, c, p.LastOffset)
			}
		}
	}
	return nil
}
