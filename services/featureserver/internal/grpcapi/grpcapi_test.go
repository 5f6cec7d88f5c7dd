package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
	featuresv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/features/v1"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/grpcapi"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.UnixMilli(1_700_002_800_000 + 7*60_000)

// wideView declares 50 features: 8 aggregations over 6 windows, plus two
// latest values.
func wideView() string {
	var b strings.Builder
	b.WriteString("name: wide\nentity: {name: user, join_keys: [user_id]}\nsource: {topic: events.wide}\nmax_age: 1h\nfeatures:\n")
	aggs := []string{"count", "sum", "avg", "min", "max", "stddev", "first", "last"}
	wins := []string{"10m", "1h", "6h", "24h", "7d", "30d"}
	n := 0
	for _, w := range wins {
		for _, a := range aggs {
			col := "amount"
			if a == "count" {
				col = ""
			}
			fmt.Fprintf(&b, "  - {name: f%d_%s_%s, column: %q, aggregation: %s, window: %s}\n", n, a, w, col, a, w)
			n++
		}
	}
	b.WriteString("  - {name: country, column: country, aggregation: latest}\n  - {name: segment, column: segment, aggregation: latest}\n")
	return b.String()
}

// seed writes the tiles of one event every 10 minutes over 31 days for
// each entity.
func seed(tb testing.TB, st core.TileStore, v *featurespec.View, entities int) {
	tb.Helper()
	end := now.UnixMilli()
	for e := range entities {
		id := fmt.Sprintf("user-%d", e)
		byKey := map[string]*tiles.Tile{}
		for ts := end - 31*86_400_000; ts <= end; ts += 600_000 {
			for _, f := range v.Features {
				res := tiles.ResolutionOf(f)
				start := tiles.StartOf(ts, res)
				key := tiles.Key(v.Name, id, res.Milliseconds(), start)
				tl := byKey[key]
				if tl == nil {
					tl = &tiles.Tile{View: v.Name, Entity: id, ResolutionMs: res.Milliseconds(), StartMs: start, Features: map[string]*tiles.IR{}}
					byKey[key] = tl
				}
				tl.MaxEventMs = max(tl.MaxEventMs, ts)
				ir := tl.Features[f.Name]
				if ir == nil {
					ir = &tiles.IR{}
					tl.Features[f.Name] = ir
				}
				var val any = float64(ts%997) / 10
				if f.Column == "country" || f.Column == "segment" {
					val = "de"
				}
				ir.Add(val, ts)
			}
		}
		var ws []core.TileWrite
		for _, tl := range byKey {
			ws = append(ws, core.TileWrite{Tile: tl, ExpiresMs: core.ExpiryOf(v, tl)})
		}
		if err := st.PutTiles(context.Background(), ws); err != nil {
			tb.Fatal(err)
		}
	}
}

type env struct {
	client featuresv1.FeatureServiceClient
	health healthpb.HealthClient
	view   *featurespec.View
}

// newOnline is the read path over an embedded store holding entities
// entities of the wide view (closed when the test ends).
func newOnline(tb testing.TB, entities int, limits core.Limits) (*featurespec.View, *core.Catalog, *core.Online) {
	tb.Helper()
	return newOnlineWith(tb, entities, limits, nil)
}

// newOnlineWith is newOnline with the read path's store wrapped by wrap
// (when not nil), after seeding.
func newOnlineWith(tb testing.TB, entities int, limits core.Limits, wrap func(core.TileStore) core.TileStore) (*featurespec.View, *core.Catalog, *core.Online) {
	tb.Helper()
	v, err := featurespec.Parse("wide.yaml", []byte(wideView()))
	if err != nil {
		tb.Fatal(err)
	}
	clk := func() time.Time { return now }
	st, err := embedded.Open(tb.TempDir(), embedded.Options{Now: clk})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Error(err)
		}
	})
	seed(tb, st, v, entities)
	cat := core.NewCatalog([]*featurespec.View{v})
	var read core.TileStore = st
	if wrap != nil {
		read = wrap(st)
	}
	on, err := core.NewOnline(read, cat, clk, limits)
	if err != nil {
		tb.Fatal(err)
	}
	return v, cat, on
}

func serve(tb testing.TB, entities int, limits core.Limits) *env {
	tb.Helper()
	return serveWith(tb, entities, limits, nil)
}

// serveWith is serve with the store wrapped by wrap (see newOnlineWith).
func serveWith(tb testing.TB, entities int, limits core.Limits, wrap func(core.TileStore) core.TileStore) *env {
	tb.Helper()
	v, cat, on := newOnlineWith(tb, entities, limits, wrap)
	srv := grpc.NewServer(grpcapi.ServerOptions()...)
	grpcapi.New(on, cat, 0).Register(srv)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		srv.Stop() // before the store closes (cleanups run last first)
	})
	return &env{client: featuresv1.NewFeatureServiceClient(conn), health: healthpb.NewHealthClient(conn), view: v}
}

func request(v *featurespec.View, entities int) *featuresv1.GetOnlineFeaturesRequest {
	req := &featuresv1.GetOnlineFeaturesRequest{}
	for _, f := range v.Features {
		req.Features = append(req.Features, v.Ref(f))
	}
	for e := range entities {
		req.Entities = append(req.Entities, &featuresv1.EntityRow{JoinKeys: map[string]string{"user_id": fmt.Sprintf("user-%d", e)}})
	}
	return req
}

func TestWideRequestOverGRPC(t *testing.T) {
	e := serve(t, 3, core.DefaultLimits())
	req := request(e.view, 3)
	req.Entities = append(req.Entities, &featuresv1.EntityRow{JoinKeys: map[string]string{"user_id": "nobody"}})
	resp, err := e.client.GetOnlineFeatures(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != 4 {
		t.Fatalf("%d rows", len(resp.GetResults()))
	}
	for r, vec := range resp.GetResults() {
		if len(vec.GetValues()) != 50 {
			t.Fatalf("row %d: %d values", r, len(vec.GetValues()))
		}
		for i, fv := range vec.GetValues() {
			name := e.view.Features[i].Name
			if r == 3 {
				if fv.GetStatus() != featuresv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND || fv.GetValue() != nil {
					t.Fatalf("nobody %s: %v", name, fv)
				}
				continue
			}
			if fv.GetStatus() != featuresv1.FeatureStatus_FEATURE_STATUS_PRESENT {
				t.Fatalf("row %d %s: %v", r, name, fv)
			}
			if fv.GetEventTime().AsTime().After(now) || fv.GetEventTime().AsTime().Before(now.Add(-10*time.Minute)) {
				t.Fatalf("row %d %s: event time %v, want within the last 10 minutes", r, name, fv.GetEventTime().AsTime())
			}
		}
		// One event every 10 minutes: the 24h count is 24*6 plus the
		// events since the window's hour-aligned start.
		count24 := vec.GetValues()[24].GetValue().GetDoubleValue()
		if r < 3 && (count24 < 144 || count24 > 150) {
			t.Fatalf("row %d: 24h count %v, want 144..150", r, count24)
		}
		if r < 3 && vec.GetValues()[48].GetValue().GetStringValue() != "de" {
			t.Fatalf("row %d: country %v", r, vec.GetValues()[48])
		}
	}
}

func TestStatusCodes(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{&core.RequestError{Field: "features[0]", Msg: "bad"}, codes.InvalidArgument},
		{fmt.Errorf("wrapped: %w", core.ErrOverloaded), codes.ResourceExhausted},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("read: %w", context.Canceled), codes.Canceled},
		{errors.New("connection refused"), codes.Unavailable},
	}
	for _, tc := range tests {
		if got := status.Code(grpcapi.Status(tc.err)); got != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, got, tc.code)
		}
	}
}

// FuzzGetOnlineFeatures feeds arbitrary bytes through the handler (the
// server's own request decoder included): it must answer OK or
// InvalidArgument and nothing else, never panic; bytes proto.Unmarshal
// rejects get InvalidArgument; an OK answer has one vector per row and one
// value per feature.
func FuzzGetOnlineFeatures(f *testing.F) {
	limits := core.DefaultLimits()
	limits.MaxRows, limits.MaxFeatures, limits.MaxValues = 20, 60, 400
	v, cat, on := newOnline(f, 2, limits)
	srv := grpcapi.New(on, cat, 8192)
	for _, req := range []*featuresv1.GetOnlineFeaturesRequest{
		request(v, 2),
		{Features: []string{"wide:country", "wide:nope", ":", "wide:"}, Entities: []*featuresv1.EntityRow{{}}},
		{Features: []string{"wide:f0_count_10m"}, Entities: []*featuresv1.EntityRow{{JoinKeys: map[string]string{"user_id": "user-1", "x": ""}}}},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &featuresv1.GetOnlineFeaturesRequest{}
		valid := proto.Unmarshal(b, req) == nil
		out, err := srv.GetOnlineFeaturesWire(context.Background(), b, nil)
		if err != nil {
			if c := status.Code(err); c != codes.InvalidArgument {
				t.Fatalf("code %s: %v", c, err)
			}
			return
		}
		if !valid {
			t.Fatal("answered a request proto.Unmarshal rejects")
		}
		resp := &featuresv1.GetOnlineFeaturesResponse{}
		if err := proto.Unmarshal(out, resp); err != nil {
			t.Fatalf("the answer does not decode: %v", err)
		}
		if len(resp.GetResults()) != len(req.GetEntities()) {
			t.Fatalf("%d vectors for %d rows", len(resp.GetResults()), len(req.GetEntities()))
		}
		for _, vec := range resp.GetResults() {
			if len(vec.GetValues()) != len(req.GetFeatures()) {
				t.Fatalf("%d values for %d features", len(vec.GetValues()), len(req.GetFeatures()))
			}
		}
	})
}

func benchmarkGet(b *testing.B, entities int) {
	e := serve(b, entities, core.DefaultLimits())
	req := request(e.view, entities)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := e.client.GetOnlineFeatures(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.GetResults()) != entities {
			b.Fatal("short response")
		}
	}
	b.ReportMetric(float64(entities*len(req.Features)), "values/op")
}

// BenchmarkGetOnlineFeatures_1x50 is one entity × 50 features through gRPC.
func BenchmarkGetOnlineFeatures_1x50(b *testing.B) { benchmarkGet(b, 1) }

// BenchmarkGetOnlineFeatures_100x50 is 100 entities × 50 features through gRPC.
func BenchmarkGetOnlineFeatures_100x50(b *testing.B) { benchmarkGet(b, 100) }

// BenchmarkNoopGRPC is a health check on the same connection, the floor
// the feature reads are compared with.
func BenchmarkNoopGRPC(b *testing.B) {
	e := serve(b, 0, core.DefaultLimits())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCore_1x50 is the read path without gRPC.
func BenchmarkCore_1x50(b *testing.B) { benchmarkCore(b, 1) }

// BenchmarkCore_100x50 is the read path of 100 entities without gRPC.
func BenchmarkCore_100x50(b *testing.B) { benchmarkCore(b, 100) }

func benchmarkCore(b *testing.B, entities int) {
	v, _, on := newOnline(b, entities, core.DefaultLimits())
	req := request(v, entities)
	rows := make(core.MapRows, len(req.Entities))
	for i, e := range req.Entities {
		rows[i] = e.JoinKeys
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := on.Get(context.Background(), req.Features, rows)
		if err != nil {
			b.Fatal(err)
		}
		res.Release()
	}
}

// benchmarkServerSide is the server's share of a call without the
// transport: decode the request, answer it, encode the response.
func benchmarkServerSide(b *testing.B, entities int) {
	v, cat, on := newOnline(b, entities, core.DefaultLimits())
	srv := grpcapi.New(on, cat, 0)
	in, err := proto.Marshal(request(v, entities))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		if out, err = srv.GetOnlineFeaturesWire(ctx, in, out[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(out)), "resp_bytes")
}

// BenchmarkServerSide_1x50 is the server's work for 1 entity × 50 features.
func BenchmarkServerSide_1x50(b *testing.B) { benchmarkServerSide(b, 1) }

// BenchmarkServerSide_100x50 is the server's work for 100 entities × 50 features.
func BenchmarkServerSide_100x50(b *testing.B) { benchmarkServerSide(b, 100) }

// TestConcurrentCallsGetTheirOwnAnswers: calls with different reference
// lists and rows, concurrently over gRPC, each get the answer the same
// call gets alone (decoding state, known reference lists and response
// buffers are reused across calls).
func TestConcurrentCallsGetTheirOwnAnswers(t *testing.T) {
	e := serve(t, 3, core.DefaultLimits())
	full := request(e.view, 3)
	var reqs []*featuresv1.GetOnlineFeaturesRequest
	for i := range 6 {
		refs := slices.Clone(full.Features[i : 10+i*7])
		if i%2 == 1 {
			slices.Reverse(refs)
		}
		rows := full.Entities[:1+i%3]
		if i == 5 {
			rows = append(slices.Clone(rows), &featuresv1.EntityRow{JoinKeys: map[string]string{"user_id": "nobody"}})
		}
		reqs = append(reqs, &featuresv1.GetOnlineFeaturesRequest{Features: refs, Entities: rows})
	}
	ctx := context.Background()
	want := make([]*featuresv1.GetOnlineFeaturesResponse, len(reqs))
	for i, req := range reqs {
		resp, err := e.client.GetOnlineFeatures(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = resp
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for n := range 40 {
				i := (w + n*5) % len(reqs)
				resp, err := e.client.GetOnlineFeatures(ctx, reqs[i])
				if err == nil && !proto.Equal(resp, want[i]) {
					err = fmt.Errorf("request %d: answer differs from the one it gets alone", i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
