// Package peertest starts the modelserver's real peers in process for
// tests: the featureserver (fed tiles on features.tiles through an
// embedded Kafka broker) and the metrics service (fed predictions and
// labels). Tests talk to them over loopback gRPC exactly as the modelserver
// does in production; nothing here answers in their place. Between the
// modelserver and the featureserver sits a Link, a forwarding hop that
// records what is asked and can stall requests like a slow network.
package peertest

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver"
)

// Now is the featureserver's clock in every test: fixed, so windows and
// staleness do not depend on when the test runs.
var Now = time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)

// ViewsDir is the directory of the feature views the test models read.
func ViewsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "features")
}

// FeaturesOptions tunes StartFeatures; zero values take defaults.
type FeaturesOptions struct {
	// Brokers is the Kafka broker tiles travel through (a new embedded
	// broker when empty).
	Brokers string
	// Views is the feature view directory (ViewsDir when empty).
	Views string
}

// Features is a featureserver running in process until the test ends.
type Features struct {
	svc     *featureserver.Service
	brokers string
	views   map[string]*featurespec.View
	link    *Link
	client  featuresv1.FeatureServiceClient
	prod    *kafka.Producer

	mu     sync.Mutex
	tiles  map[string]*tiles.Tile // key → tile as last produced
	staged []staged
	own    int64 // GetOnlineFeatures calls made by this helper
}

type staged struct {
	ref  string
	keys map[string]string
	want *featuresv1.Value
}

// StartFeatures runs a featureserver with an embedded store behind a Link
// that can hold requests, and returns once it serves gRPC.
func StartFeatures(t testing.TB, opts FeaturesOptions) *Features {
	t.Helper()
	if opts.Brokers == "" {
		opts.Brokers = testutil.Kafka(t, 1)
	}
	if opts.Views == "" {
		opts.Views = ViewsDir()
	}
	views, err := featurespec.LoadDir(opts.Views)
	if err != nil {
		t.Fatal(err)
	}
	cfg := featureserver.DefaultConfig()
	cfg.Common.KafkaBrokers = opts.Brokers
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.GRPCAddr = "127.0.0.1:0"
	cfg.Common.LogLevel = "error"
	cfg.Features = opts.Views
	cfg.DataDir = t.TempDir()
	cfg.FlushInterval = 10 * time.Millisecond
	cfg.TilesPartitions = 1
	f := &Features{brokers: opts.Brokers, views: map[string]*featurespec.View{}, tiles: map[string]*tiles.Tile{}}
	for _, v := range views {
		f.views[v.Name] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := featureserver.New(ctx, cfg, featureserver.Deps{Now: func() time.Time { return Now }})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	f.svc = svc
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("featureserver run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("featureserver did not stop within 20s")
		}
	})
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	f.client = featuresv1.NewFeatureServiceClient(conn)
	f.link = startLink(t, conn, f.views)
	f.prod, err = kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{opts.Brokers}, Topic: tiles.Topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.prod.Close(); err != nil {
			t.Errorf("close tile producer: %v", err)
		}
	})
	return f
}

// Addr is the address the modelserver dials: the Link in front of the
// featureserver.
func (f *Features) Addr() string { return f.link.Addr() }

// ServerAddr is the featureserver's own gRPC address, without the Link
// (for benchmarks, which should not pay the extra hop).
func (f *Features) ServerAddr() string { return f.svc.GRPCAddr() }

// Link is the hop in front of the featureserver, to hold requests and see
// which features were read.
func (f *Features) Link() *Link { return f.link }

// Set stages a value for ref ("view:feature") of the entity whose join
// keys are keys ("user_id", "u1", ...): the tile that makes the feature
// aggregate to v. Sync publishes staged values.
func (f *Features) Set(t testing.TB, ref string, v any, keys ...string) {
	t.Helper()
	viewName, featName, _ := strings.Cut(ref, ":")
	view, ok := f.views[viewName]
	if !ok {
		t.Fatalf("peertest: feature view %q is not in the views directory", viewName)
	}
	feat, ok := view.Feature(featName)
	if !ok {
		t.Fatalf("peertest: view %s has no feature %q", viewName, featName)
	}
	if len(keys)%2 != 0 {
		t.Fatalf("peertest: keys %v are not name/value pairs", keys)
	}
	row := map[string]string{}
	for i := 0; i < len(keys); i += 2 {
		row[keys[i]] = keys[i+1]
	}
	vals := make([]string, len(view.Entity.JoinKeys))
	for i, k := range view.Entity.JoinKeys {
		val, ok := row[k]
		if !ok {
			t.Fatalf("peertest: join key %q of view %s missing from %v", k, viewName, keys)
		}
		vals[i] = val
	}
	eventMs := Now.Add(-time.Minute).UnixMilli()
	res := tiles.ResolutionOf(feat)
	start := int64(0)
	if res > 0 {
		start = tiles.StartOf(eventMs, res)
	}
	ir := &tiles.IR{}
	var want *featuresv1.Value
	switch feat.Aggregation {
	case featurespec.AggCount:
		n, ok := v.(int)
		if x, isFloat := v.(float64); isFloat && x == math.Trunc(x) {
			n, ok = int(x), true
		}
		if !ok || n < 0 {
			t.Fatalf("peertest: %s is a count; set it with a non-negative int, not %v", ref, v)
		}
		for range n {
			ir.Observe(feat.Aggregation, nil, eventMs)
		}
	default:
		ir.Observe(feat.Aggregation, v, eventMs)
	}
	got, ok := ir.Value(feat.Aggregation)
	if !ok {
		t.Fatalf("peertest: %s: no value from %v", ref, v)
	}
	want = toValue(got)

	f.mu.Lock()
	defer f.mu.Unlock()
	entity := tiles.EntityID(vals)
	key := tiles.Key(viewName, entity, res.Milliseconds(), start)
	tile, ok := f.tiles[key]
	if !ok {
		tile = &tiles.Tile{View: viewName, Entity: entity, ResolutionMs: res.Milliseconds(), StartMs: start, Features: map[string]*tiles.IR{}}
		f.tiles[key] = tile
	}
	tile.Features[featName] = ir
	tile.MaxEventMs = eventMs
	f.staged = append(f.staged, staged{ref: ref, keys: row, want: want})
}

// toValue is the Value the featureserver answers for an aggregation result.
func toValue(v any) *featuresv1.Value {
	switch x := v.(type) {
	case string:
		return &featuresv1.Value{Kind: &featuresv1.Value_StringValue{StringValue: x}}
	case float64:
		return &featuresv1.Value{Kind: &featuresv1.Value_DoubleValue{DoubleValue: x}}
	case int:
		return &featuresv1.Value{Kind: &featuresv1.Value_DoubleValue{DoubleValue: float64(x)}}
	}
	return nil
}

// number is a Value as a float, for comparing what is served with what was set.
func number(v *featuresv1.Value) (float64, bool) {
	switch k := v.GetKind().(type) {
	case *featuresv1.Value_DoubleValue:
		return k.DoubleValue, true
	case *featuresv1.Value_Int64Value:
		return float64(k.Int64Value), true
	}
	return 0, false
}

func sameValue(a, b *featuresv1.Value) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && math.Abs(x-y) < 1e-9
	}
	return a.GetStringValue() == b.GetStringValue() && a.GetStringValue() != ""
}

// Sync produces the tiles of every staged value onto features.tiles and
// waits until the featureserver serves each of them.
func (f *Features) Sync(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	var msgs []kafka.Message
	for key, tile := range f.tiles {
		b, err := tile.Encode()
		if err != nil {
			f.mu.Unlock()
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: b})
	}
	want := f.staged
	f.staged = nil
	f.mu.Unlock()
	if len(want) == 0 {
		return
	}
	ctx := testutil.Context(t, 30*time.Second)
	if err := f.prod.Write(ctx, msgs...); err != nil {
		t.Fatalf("peertest: produce %d tiles: %v", len(msgs), err)
	}
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("the featureserver to serve %d set values", len(want)), func() error {
		for i := 0; i < len(want); i += 500 {
			chunk := want[i:min(i+500, len(want))]
			if err := f.check(ctx, chunk); err != nil {
				return err
			}
		}
		return nil
	})
}

func (f *Features) check(ctx context.Context, want []staged) error {
	// One request per ref keeps rows × features small.
	byRef := map[string][]staged{}
	for _, w := range want {
		byRef[w.ref] = append(byRef[w.ref], w)
	}
	for ref, ws := range byRef {
		req := &featuresv1.GetOnlineFeaturesRequest{Features: []string{ref}}
		for _, w := range ws {
			req.Entities = append(req.Entities, &featuresv1.EntityRow{JoinKeys: w.keys})
		}
		f.mu.Lock()
		f.own++
		f.mu.Unlock()
		resp, err := f.client.GetOnlineFeatures(ctx, req)
		if err != nil {
			return fmt.Errorf("GetOnlineFeatures %s: %w", ref, err)
		}
		for i, w := range ws {
			got := resp.GetResults()[i].GetValues()[0]
			if got.GetStatus() != featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT || !sameValue(got.GetValue(), w.want) {
				return fmt.Errorf("%s of %v: %s %v, want PRESENT %v", ref, w.keys, got.GetStatus(), got.GetValue(), w.want)
			}
		}
	}
	return nil
}

// Calls counts the GetOnlineFeatures requests the featureserver answered
// (from its own request counter on /metrics), less the ones Sync made.
func (f *Features) Calls(t testing.TB) int64 {
	t.Helper()
	res, err := http.Get("http://" + f.svc.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "tributary_grpc_server_requests_total{") || !strings.Contains(line, "GetOnlineFeatures") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("featureserver /metrics line %q: %v", line, err)
		}
		n += v
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(n) - f.own
}
