// Command benchload is the tile loader of the featureserver benchmark
// (bench/featureserver/run.sh). It synthesises the tiles the featurizer
// would have built for a history of events of many entities of one feature
// view, produces them to features.tiles, waits until a running featureserver
// serves every one of them with the values the events imply, and writes the
// load generator's request files.
//
// It lives in the featureserver module (an internal main package) so it
// builds with the same tile format and Kafka client as the service.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

type options struct {
	features   string
	brokers    string
	grpcAddr   string
	entities   int
	history    time.Duration
	every      time.Duration
	partitions int
	out        string
	batchRows  int
	timeout    time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("benchload", flag.ExitOnError)
	fs.StringVar(&o.features, "features", "examples/bench/features", "directory holding the one feature view to load")
	fs.StringVar(&o.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap address")
	fs.StringVar(&o.grpcAddr, "grpc", "127.0.0.1:9101", "featureserver gRPC address to wait on")
	fs.IntVar(&o.entities, "entities", 200, "entities to load (user-0 … user-<n-1>)")
	fs.DurationVar(&o.history, "history", 31*24*time.Hour, "how far back each entity's events go")
	fs.DurationVar(&o.every, "every", 10*time.Minute, "one event per entity this often")
	fs.IntVar(&o.partitions, "partitions", 4, "partitions of features.tiles when this creates it")
	fs.StringVar(&o.out, "out", ".", "directory the load generator's request files are written to")
	fs.IntVar(&o.batchRows, "batch-rows", 100, "entity rows per request of the batch request file")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "longest wait for the tiles to be served")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchload: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	switch {
	case o.entities < 1:
		return fmt.Errorf("entities: %d, want at least 1", o.entities)
	case o.batchRows < 1 || o.batchRows > o.entities:
		return fmt.Errorf("batch-rows: %d, want 1..entities (%d)", o.batchRows, o.entities)
	case o.every <= 0 || o.history < o.every:
		return fmt.Errorf("every: %s and history: %s, want 0 < every <= history", o.every, o.history)
	}
	views, err := featurespec.LoadDir(o.features)
	if err != nil {
		return err
	}
	if len(views) != 1 {
		return fmt.Errorf("features: %s holds %d feature views, want exactly one", o.features, len(views))
	}
	v := views[0]
	if len(v.Entity.JoinKeys) != 1 {
		return fmt.Errorf("features: view %s has join keys %v, want one", v.Name, v.Entity.JoinKeys)
	}
	d := dataset{view: v, endMs: time.Now().UnixMilli(), everyMs: o.every.Milliseconds(), events: int(o.history / o.every)}

	start := time.Now()
	n, bytes, err := produce(ctx, o, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchload: produced %d tiles (%.1f MB) of %d entities in %s\n", n, float64(bytes)/1e6, o.entities, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := waitServed(ctx, o, d); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchload: all %d entities × %d features served with the expected values after %s\n", o.entities, len(v.Features), time.Since(start).Round(time.Millisecond))
	return writeRequests(o, v)
}

// dataset is every entity's event history: one event every everyMs, the
// newest at endMs. Entities differ in their values, not their times.
type dataset struct {
	view    *featurespec.View
	endMs   int64
	everyMs int64
	events  int
}

func entityID(i int) string { return fmt.Sprintf("user-%d", i) }

// value is the column value of event k (k events before the newest) of
// entity e.
func (d dataset) value(f featurespec.Feature, e, k int) any {
	switch f.Column {
	case "":
		return nil
	case "country":
		return []string{"de", "fr", "us", "br"}[(e+k)%4]
	case "segment":
		return []string{"retail", "smb", "enterprise"}[(e+k)%3]
	default:
		return float64((e*7919+k*104729)%100_000) / 100
	}
}

// tiles builds entity e's tiles that are still readable at the dataset's
// end, the way the featurizer builds them.
func (d dataset) tiles(e int) []*tiles.Tile {
	type group struct {
		res   time.Duration
		feats []featurespec.Feature
		cur   *tiles.Tile
	}
	var groups []*group
	byRes := map[time.Duration]*group{}
	for _, f := range d.view.Features {
		res := tiles.ResolutionOf(f)
		g := byRes[res]
		if g == nil {
			g = &group{res: res}
			byRes[res] = g
			groups = append(groups, g)
		}
		g.feats = append(g.feats, f)
	}
	var out []*tiles.Tile
	id := entityID(e)
	for k := d.events; k >= 0; k-- {
		ts := d.endMs - int64(k)*d.everyMs
		for _, g := range groups {
			var start int64
			if g.res > 0 {
				start = tiles.StartOf(ts, g.res)
			}
			// Events come oldest first, so a group's tile changes only
			// when an event crosses into the next one.
			if g.cur == nil || g.cur.StartMs != start {
				g.cur = &tiles.Tile{View: d.view.Name, Entity: id, ResolutionMs: g.res.Milliseconds(), StartMs: start, Features: make(map[string]*tiles.IR, len(g.feats))}
				out = append(out, g.cur)
			}
			t := g.cur
			t.MaxEventMs = max(t.MaxEventMs, ts)
			for _, f := range g.feats {
				ir := t.Features[f.Name]
				if ir == nil {
					ir = &tiles.IR{}
					t.Features[f.Name] = ir
				}
				ir.Observe(f.Aggregation, d.value(f, e, k), ts)
			}
		}
	}
	live := out[:0]
	for _, t := range out {
		if exp := core.ExpiryOf(d.view, t); exp == 0 || exp > d.endMs {
			live = append(live, t)
		}
	}
	return live
}

// produce writes every entity's tiles to features.tiles.
func produce(ctx context.Context, o options, d dataset) (int, int64, error) {
	brokers := []string{o.brokers}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := kafka.EnsureTopics(tctx, brokers, kafka.TopicSpec{Name: tiles.Topic, Partitions: o.partitions, Compacted: true})
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("ensure %s: %w", tiles.Topic, err)
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: tiles.Topic, BatchSize: 2000})
	if err != nil {
		return 0, 0, err
	}
	var n int
	var bytes int64
	var msgs []kafka.Message
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := p.Write(wctx, msgs...); err != nil {
			return err
		}
		msgs = msgs[:0]
		return nil
	}
	for e := range o.entities {
		for _, t := range d.tiles(e) {
			b, err := t.Encode()
			if err != nil {
				return 0, 0, errors.Join(err, p.Close())
			}
			msgs = append(msgs, kafka.Message{Key: []byte(t.Key()), Value: b})
			n++
			bytes += int64(len(b))
		}
		if len(msgs) >= 4000 {
			if err := flush(); err != nil {
				return 0, 0, errors.Join(err, p.Close())
			}
		}
	}
	if err := flush(); err != nil {
		return 0, 0, errors.Join(err, p.Close())
	}
	return n, bytes, p.Close()
}

// expectedCount is the count feature f has at nowMs: the events whose
// time falls in the sawtooth window, the newest being at endMs.
func (d dataset) expectedCount(f featurespec.Feature, nowMs int64) float64 {
	from := tiles.StartOf(nowMs-time.Duration(f.Window).Milliseconds(), tiles.ResolutionOf(f))
	n := 0
	for k := 0; k <= d.events; k++ {
		if ts := d.endMs - int64(k)*d.everyMs; ts >= from && ts <= nowMs {
			n++
		}
	}
	return float64(n)
}

// waitServed polls GetOnlineFeatures for every entity until every value is
// present and every count equals the events in its window.
func waitServed(ctx context.Context, o options, d dataset) error {
	conn, err := grpc.NewClient(o.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := featuresv1.NewFeatureServiceClient(conn)
	refs := make([]string, len(d.view.Features))
	for i, f := range d.view.Features {
		refs[i] = d.view.Ref(f)
	}
	key := d.view.Entity.JoinKeys[0]
	const chunk = 500
	deadline := time.Now().Add(o.timeout)
	var last error
	for next := 0; next < o.entities; {
		if time.Now().After(deadline) {
			return fmt.Errorf("entities %d..%d not served as expected within %s: %v", next, o.entities-1, o.timeout, last)
		}
		hi := min(o.entities, next+chunk)
		req := &featuresv1.GetOnlineFeaturesRequest{Features: refs}
		for e := next; e < hi; e++ {
			req.Entities = append(req.Entities, &featuresv1.EntityRow{JoinKeys: map[string]string{key: entityID(e)}})
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nowMs := time.Now().UnixMilli()
		resp, err := client.GetOnlineFeatures(cctx, req)
		cancel()
		if err == nil {
			err = d.check(resp, next, nowMs)
		}
		if err == nil {
			next = hi
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		// Polling interval while the featureserver consumes the tiles.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

func (d dataset) check(resp *featuresv1.GetOnlineFeaturesResponse, first int, nowMs int64) error {
	for r, vec := range resp.GetResults() {
		for i, fv := range vec.GetValues() {
			f := d.view.Features[i]
			if fv.GetStatus() != featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT {
				return fmt.Errorf("%s %s: status %s", entityID(first+r), f.Name, fv.GetStatus())
			}
			if f.Aggregation != featurespec.AggCount {
				continue
			}
			if got, want := fv.GetValue().GetDoubleValue(), d.expectedCount(f, nowMs); got != want {
				return fmt.Errorf("%s %s: %v, want %v (tiles still arriving)", entityID(first+r), f.Name, got, want)
			}
		}
	}
	return nil
}

// request is a GetOnlineFeaturesRequest in the JSON the load generator reads.
type request struct {
	Features []string `json:"features"`
	Entities []row    `json:"entities"`
}

type row struct {
	JoinKeys map[string]string `json:"join_keys"`
}

// writeRequests writes single.json (one request per entity, one entity
// each) and batch.json (requests of batchRows distinct entities); the load
// generator sends their requests round-robin.
func writeRequests(o options, v *featurespec.View) error {
	refs := make([]string, len(v.Features))
	for i, f := range v.Features {
		refs[i] = v.Ref(f)
	}
	key := v.Entity.JoinKeys[0]
	single := make([]request, o.entities)
	for e := range single {
		single[e] = request{Features: refs, Entities: []row{{JoinKeys: map[string]string{key: entityID(e)}}}}
	}
	batches := make([]request, 50)
	for i := range batches {
		rows := make([]row, o.batchRows)
		for j := range rows {
			rows[j] = row{JoinKeys: map[string]string{key: entityID((i*o.batchRows + j) % o.entities)}}
		}
		batches[i] = request{Features: refs, Entities: rows}
	}
	for name, reqs := range map[string][]request{"single.json": single, "batch.json": batches} {
		b, err := json.Marshal(reqs)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.out, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
