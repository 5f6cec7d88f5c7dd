package featureserver_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver"
	"github.com/tributary-ml/tributary/services/featureserver/internal/cqlserver"
)

const clicksView = `name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks, format: json, event_time: ts_ms}
max_age: 1h
features:
  - {name: count_10m, aggregation: count, window: 10m}
  - {name: count_1h, aggregation: count, window: 1h}
  - {name: last_page, column: page, aggregation: latest}
`

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// now is the test's wall time: a multiple of an hour plus 7 minutes.
var now = time.UnixMilli(1_700_002_800_000 + 7*60_000)

type running struct {
	svc    *featureserver.Service
	client featuresv1.FeatureServiceClient
	stop   func()
}

func start(t *testing.T, cfg featureserver.Config, clk *clock) *running {
	t.Helper()
	return startWith(t, cfg, featureserver.Deps{Now: clk.Now})
}

// startWith runs the service with deps (a discarding logger when none).
func startWith(t *testing.T, cfg featureserver.Config, deps featureserver.Deps) *running {
	t.Helper()
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := featureserver.New(ctx, cfg, deps)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	conn, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = conn.Close()
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("service stopped with: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("service did not stop within 20s")
			}
		})
	}
	t.Cleanup(stop)
	return &running{svc: svc, client: featuresv1.NewFeatureServiceClient(conn), stop: stop}
}

func config(t *testing.T, brokers, featuresDir, dataDir string) featureserver.Config {
	cfg := featureserver.DefaultConfig()
	cfg.Common.KafkaBrokers = brokers
	cfg.Common.AdminAddr = "127.0.0.1:0"
	cfg.Common.GRPCAddr = "127.0.0.1:0"
	cfg.Features = featuresDir
	cfg.DataDir = dataDir
	cfg.ReloadInterval = 20 * time.Millisecond
	cfg.FlushInterval = 20 * time.Millisecond
	return cfg
}

func writeView(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func produce(t *testing.T, brokers string, msgs ...kafka.Message) {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{brokers}, Topic: tiles.Topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Write(testutil.Context(t, 20*time.Second), msgs...); err != nil {
		t.Fatal(err)
	}
}

func tileMsg(t *testing.T, tl *tiles.Tile) kafka.Message {
	t.Helper()
	b, err := tl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(tl.Key()), Value: b}
}

// clickTiles are the tiles of clicks at the given times (ms before now),
// each on page "p<ms>".
func clickTiles(entity string, agoMs ...int64) []*tiles.Tile {
	byKey := map[string]*tiles.Tile{}
	var order []string
	latest := &tiles.Tile{View: "clicks", Entity: entity, Features: map[string]*tiles.IR{"last_page": {}}}
	for _, ago := range agoMs {
		ts := now.UnixMilli() - ago
		start := tiles.StartOf(ts, 5*time.Minute)
		key := tiles.Key("clicks", entity, 300_000, start)
		tl := byKey[key]
		if tl == nil {
			tl = &tiles.Tile{View: "clicks", Entity: entity, ResolutionMs: 300_000, StartMs: start, Features: map[string]*tiles.IR{"count_10m": {}, "count_1h": {}}}
			byKey[key] = tl
			order = append(order, key)
		}
		tl.MaxEventMs = max(tl.MaxEventMs, ts)
		tl.Features["count_10m"].Add(nil, ts)
		tl.Features["count_1h"].Add(nil, ts)
		latest.Features["last_page"].Add(fmt.Sprintf("p%d", ago), ts)
		latest.MaxEventMs = max(latest.MaxEventMs, ts)
	}
	out := []*tiles.Tile{latest}
	for _, k := range order {
		out = append(out, byKey[k])
	}
	return out
}

type want struct {
	double float64
	str    string
	status featuresv1.FeatureStatus
	event  int64 // ms before now; -1 for none
}

func check(resp *featuresv1.GetOnlineFeaturesResponse, wants [][]want) error {
	if len(resp.GetResults()) != len(wants) {
		return fmt.Errorf("%d result rows, want %d", len(resp.GetResults()), len(wants))
	}
	for r, row := range wants {
		vals := resp.GetResults()[r].GetValues()
		if len(vals) != len(row) {
			return fmt.Errorf("row %d: %d values, want %d", r, len(vals), len(row))
		}
		for i, w := range row {
			v := vals[i]
			if v.GetStatus() != w.status {
				return fmt.Errorf("row %d value %d: status %s, want %s", r, i, v.GetStatus(), w.status)
			}
			if w.status == featuresv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND {
				if v.GetValue() != nil {
					return fmt.Errorf("row %d value %d: NOT_FOUND with a value %v", r, i, v.GetValue())
				}
				continue
			}
			if w.str != "" {
				if v.GetValue().GetStringValue() != w.str {
					return fmt.Errorf("row %d value %d: %v, want %q", r, i, v.GetValue(), w.str)
				}
			} else if got := v.GetValue().GetDoubleValue(); got != w.double {
				return fmt.Errorf("row %d value %d: %v, want %v", r, i, v.GetValue(), w.double)
			}
			if w.event >= 0 {
				if got, exp := v.GetEventTime().AsTime().UnixMilli(), now.UnixMilli()-w.event; got != exp {
					return fmt.Errorf("row %d value %d: event time %d, want %d", r, i, got, exp)
				}
			}
		}
	}
	return nil
}

var present = featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT

// TestTilesFromKafkaAreServed is the service end to end: tiles on the
// embedded Kafka broker → consumer → store → gRPC, then a restart against
// an empty broker still serves them from the store. It runs on the
// embedded store and on the ScyllaDB adapter against the in-process CQL
// server.
func TestTilesFromKafkaAreServed(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		testTilesFromKafka(t, func(cfg *featureserver.Config) {})
	})
	t.Run("scylla", func(t *testing.T) {
		srv, err := cqlserver.Start(nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		testTilesFromKafka(t, func(cfg *featureserver.Config) {
			cfg.Store, cfg.ScyllaHosts, cfg.ScyllaConsistency = featureserver.StoreScylla, srv.Addr(), "ONE"
		})
	})
}

func testTilesFromKafka(t *testing.T, withStore func(*featureserver.Config)) {
	brokers := testutil.Kafka(t, 2)
	featuresDir, dataDir := t.TempDir(), t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	clk := &clock{now: now}
	cfg := config(t, brokers, featuresDir, dataDir)
	withStore(&cfg)
	fs := start(t, cfg, clk)

	// u1 clicked 1, 4, 12 and 50 minutes ago; u2 30 minutes ago.
	var msgs []kafka.Message
	for _, tl := range clickTiles("u1", 60_000, 240_000, 720_000, 3_000_000) {
		msgs = append(msgs, tileMsg(t, tl))
	}
	for _, tl := range clickTiles("u2", 1_800_000) {
		msgs = append(msgs, tileMsg(t, tl))
	}
	msgs = append(msgs, kafka.Message{Key: []byte("junk"), Value: []byte(`{"view":""}`)})
	produce(t, brokers, msgs...)

	req := &featuresv1.GetOnlineFeaturesRequest{
		Features: []string{"clicks:count_10m", "clicks:count_1h", "clicks:last_page"},
		Entities: []*featuresv1.EntityRow{
			{JoinKeys: map[string]string{"user_id": "u1"}},
			{JoinKeys: map[string]string{"user_id": "u2"}},
			{JoinKeys: map[string]string{"user_id": "nobody"}},
		},
	}
	notFound := want{status: featuresv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND}
	// The 10m window at :07 starts at :55 of the previous hour (5m tiles):
	// clicks 1, 4 and 12 minutes ago fall in it.
	wants := [][]want{
		{{double: 3, status: present, event: 60_000}, {double: 4, status: present, event: 60_000}, {str: "p60000", status: present, event: 60_000}},
		{{double: 0, status: present, event: 1_800_000}, {double: 1, status: present, event: 1_800_000}, {str: "p1800000", status: present, event: 1_800_000}},
		{notFound, notFound, notFound},
	}
	ask := func(fs *running) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := fs.client.GetOnlineFeatures(ctx, req)
			if err != nil {
				return err
			}
			if strings.Join(resp.GetFeatures(), ",") != strings.Join(req.Features, ",") {
				return fmt.Errorf("features echoed as %v", resp.GetFeatures())
			}
			return check(resp, wants)
		}
	}
	testutil.Eventually(t, 20*time.Second, "tiles produced to Kafka to be served", ask(fs))

	// An hour later without new events: windows decayed, values STALE.
	clk.Set(now.Add(time.Hour))
	stale := featuresv1.FeatureStatus_FEATURE_STATUS_STALE
	decayed := [][]want{
		// The 1h window now starts at :05 of the original hour: the tile
		// holding the click a minute before the original now still counts.
		{{double: 0, status: stale, event: 60_000}, {double: 1, status: stale, event: 60_000}, {str: "p60000", status: stale, event: 60_000}},
		{{double: 0, status: stale, event: 1_800_000}, {double: 0, status: stale, event: 1_800_000}, {str: "p1800000", status: stale, event: 1_800_000}},
		{notFound, notFound, notFound},
	}
	resp, err := fs.client.GetOnlineFeatures(testutil.Context(t, 5*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(resp, decayed); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
	clk.Set(now)

	// Restart on a fresh, empty broker: the data dir alone serves the tiles.
	fs.stop()
	cfg.Common.KafkaBrokers = testutil.Kafka(t, 1)
	fs2 := start(t, cfg, clk)
	if err := ask(fs2)(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestListFeatureViewsFollowsTheFiles(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	fs := start(t, config(t, brokers, featuresDir, t.TempDir()), &clock{now: now})

	list := func() (*featuresv1.ListFeatureViewsResponse, error) {
		return fs.client.ListFeatureViews(testutil.Context(t, 5*time.Second), &featuresv1.ListFeatureViewsRequest{})
	}
	resp, err := list()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetViews()) != 1 {
		t.Fatalf("views: %v", resp.GetViews())
	}
	v := resp.GetViews()[0]
	if v.GetName() != "clicks" || v.GetEntity() != "user" || strings.Join(v.GetJoinKeys(), ",") != "user_id" || v.GetSourceTopic() != "events.clicks" {
		t.Fatalf("view: %v", v)
	}
	var got []string
	for _, f := range v.GetFeatures() {
		got = append(got, f.GetName()+"/"+f.GetAggregation()+"/"+f.GetWindow()+"/"+f.GetColumn())
	}
	if g, w := strings.Join(got, " "), "count_10m/count/10m/ count_1h/count/1h/ last_page/latest//page"; g != w {
		t.Fatalf("features: %s, want %s", g, w)
	}

	// A new feature in the file is served without a restart.
	writeView(t, featuresDir, "clicks.yaml", clicksView+"  - {name: count_7d, aggregation: count, window: 7d}\n")
	testutil.Eventually(t, 10*time.Second, "the edited view to be served", func() error {
		_, err := fs.client.GetOnlineFeatures(testutil.Context(t, 5*time.Second), &featuresv1.GetOnlineFeaturesRequest{
			Features: []string{"clicks:count_7d"},
			Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u"}}},
		})
		return err
	})
	resp, err = list()
	if err != nil {
		t.Fatal(err)
	}
	if fs := resp.GetViews()[0].GetFeatures(); len(fs) != 4 || fs[3].GetWindow() != "168h" {
		t.Fatalf("after edit: %v", fs)
	}

	// A broken edit keeps the previous views and makes the service not ready.
	writeView(t, featuresDir, "clicks.yaml", "name: clicks\nfeatures: []\n")
	testutil.Eventually(t, 10*time.Second, "readiness to report the broken view file", func() error {
		r, err := http.Get("http://" + fs.svc.AdminAddr() + "/readyz")
		if err != nil {
			return err
		}
		defer r.Body.Close()
		body, _ := io.ReadAll(r.Body)
		if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "feature-views") {
			return fmt.Errorf("readyz %d %q", r.StatusCode, body)
		}
		return nil
	})
	if resp, err = list(); err != nil || len(resp.GetViews()[0].GetFeatures()) != 4 {
		t.Fatalf("after a broken edit: %v %v, want the previous 4 features", resp, err)
	}
}

func TestBadRequestsOverGRPC(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	cfg := config(t, brokers, featuresDir, t.TempDir())
	cfg.MaxRequestBytes = 4096
	fs := start(t, cfg, &clock{now: now})
	row := []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u"}}}
	big := make([]*featuresv1.EntityRow, 200)
	for i := range big {
		big[i] = &featuresv1.EntityRow{JoinKeys: map[string]string{"user_id": fmt.Sprintf("user-%d", i)}}
	}
	tests := []struct {
		name string
		req  *featuresv1.GetOnlineFeaturesRequest
		code codes.Code
		msg  string
	}{
		{"unknown view", &featuresv1.GetOnlineFeaturesRequest{Features: []string{"nope:x"}, Entities: row}, codes.InvalidArgument, `features[0]: unknown feature view "nope"`},
		{"unknown feature", &featuresv1.GetOnlineFeaturesRequest{Features: []string{"clicks:x"}, Entities: row}, codes.InvalidArgument, `feature view "clicks" has no feature "x"`},
		{"missing join key", &featuresv1.GetOnlineFeaturesRequest{Features: []string{"clicks:count_1h"}, Entities: []*featuresv1.EntityRow{{}}}, codes.InvalidArgument, `entities[0]: missing join key "user_id"`},
		{"oversized", &featuresv1.GetOnlineFeaturesRequest{Features: []string{"clicks:count_1h"}, Entities: big}, codes.InvalidArgument, "the limit is 4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fs.client.GetOnlineFeatures(testutil.Context(t, 5*time.Second), tc.req)
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("err = %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*featureserver.Config)
		field string
	}{
		{"store", func(c *featureserver.Config) { c.Store = "redis" }, "store:"},
		{"data dir", func(c *featureserver.Config) { c.DataDir = "" }, "data-dir:"},
		{"features", func(c *featureserver.Config) { c.Features = "" }, "features:"},
		{"max rows", func(c *featureserver.Config) { c.Limits.MaxRows = 0 }, "max-rows:"},
		{"flush", func(c *featureserver.Config) { c.FlushInterval = 0 }, "flush-interval:"},
		{"scylla consistency", func(c *featureserver.Config) { c.Store, c.ScyllaConsistency = "scylla", "SOME" }, "scylla-consistency:"},
		{"scylla hosts", func(c *featureserver.Config) { c.Store, c.ScyllaHosts = "scylla", " , " }, "scylla-hosts:"},
		{"scylla tile cache", func(c *featureserver.Config) { c.Store, c.ScyllaTileCacheMB = "scylla", -1 }, "scylla-tile-cache-mb:"},
		{"gc percent", func(c *featureserver.Config) { c.GCPercent = 0 }, "gc-percent:"},
		{"memory limit", func(c *featureserver.Config) { c.MemoryLimitMB = -1 }, "memory-limit-mb:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := featureserver.DefaultConfig()
			tc.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tc.field) {
				t.Fatalf("err = %v, want it to start with %q", err, tc.field)
			}
		})
	}
	if err := featureserver.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	_, err := featureserver.New(context.Background(), func() featureserver.Config {
		c := featureserver.DefaultConfig()
		c.Common.AdminAddr, c.Common.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.Features = t.TempDir()
		return c
	}(), featureserver.Deps{Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "features") {
		t.Fatalf("empty features dir: err = %v", err)
	}
}

// New sets the process's GC percentage and memory limit from the config,
// and leaves the runtime's settings alone when told to.
func TestGCSettingsAreApplied(t *testing.T) {
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)

	cfg := config(t, brokers, featuresDir, t.TempDir())
	cfg.GCPercent, cfg.MemoryLimitMB = 250, 3000
	start(t, cfg, &clock{now: now}).stop()
	if got := debug.SetGCPercent(100); got != 250 {
		t.Errorf("GC percent after New with gc-percent 250: %d", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != 3000<<20 {
		t.Errorf("memory limit after New with memory-limit-mb 3000: %d bytes, want %d", got, 3000<<20)
	}

	cfg = config(t, brokers, featuresDir, t.TempDir())
	cfg.GCPercent, cfg.MemoryLimitMB = -1, 0
	start(t, cfg, &clock{now: now}).stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent after New with gc-percent -1: %d, want the runtime's 100 left alone", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("memory limit after New with memory-limit-mb 0: %d, want the runtime's left alone", got)
	}
}

// TestFeatureServiceSurface: the feature service registered by hand (its
// answers are written in wire form) looks like the generated one from
// outside: server reflection resolves it, and the metrics interceptor
// counts its calls by method and code.
func TestFeatureServiceSurface(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	featuresDir := t.TempDir()
	writeView(t, featuresDir, "clicks.yaml", clicksView)
	fs := start(t, config(t, brokers, featuresDir, t.TempDir()), &clock{now: now})
	ctx := testutil.Context(t, 10*time.Second)

	ok := &featuresv1.GetOnlineFeaturesRequest{Features: []string{"clicks:count_1h"}, Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "u"}}}}
	if _, err := fs.client.GetOnlineFeatures(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.client.GetOnlineFeatures(ctx, &featuresv1.GetOnlineFeaturesRequest{Features: []string{"nope:x"}, Entities: ok.Entities}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unknown view: %v, want InvalidArgument", err)
	}
	const method = `method="/tributary.features.v1.FeatureService/GetOnlineFeatures"`
	testutil.Eventually(t, 10*time.Second, "GetOnlineFeatures calls counted on /metrics", func() error {
		resp, err := http.Get("http://" + fs.svc.AdminAddr() + "/metrics")
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		if cerr := resp.Body.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		for _, code := range []string{"OK", "InvalidArgument"} {
			found := false
			for _, line := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(line, "tributary_grpc_server_requests_total{") && strings.Contains(line, method) && strings.Contains(line, `code="`+code+`"`) {
					found = strings.HasSuffix(line, " 1")
				}
			}
			if !found {
				return fmt.Errorf("no count of 1 for code %s", code)
			}
		}
		return nil
	})

	conn, err := grpc.NewClient(fs.svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stream.CloseSend() }()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "tributary.features.v1.FeatureService"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	found := false
	for _, b := range files {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			t.Fatal(err)
		}
		for _, svc := range fd.GetService() {
			if svc.GetName() == "FeatureService" && len(svc.GetMethod()) == 2 && svc.GetMethod()[0].GetName() == "GetOnlineFeatures" {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("reflection: FeatureService with GetOnlineFeatures not in %d files (%v)", len(files), resp.GetErrorResponse())
	}
}
