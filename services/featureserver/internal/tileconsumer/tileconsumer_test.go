package tileconsumer_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/telemetry"
	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
	"github.com/tributary-ml/tributary/services/featureserver/internal/store/embedded"
	"github.com/tributary-ml/tributary/services/featureserver/internal/tileconsumer"
)

const view = `name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks}
features:
  - {name: count_1h, aggregation: count, window: 1h}
`

type fixture struct {
	h     *tileconsumer.Handler
	store *embedded.Store
	tel   *telemetry.Telemetry
	now   time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	now := time.UnixMilli(1_700_000_000_000)
	clk := func() time.Time { return now }
	st, err := embedded.Open(t.TempDir(), embedded.Options{Now: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	v, err := featurespec.Parse("clicks.yaml", []byte(view))
	if err != nil {
		t.Fatal(err)
	}
	tel, err := telemetry.New(context.Background(), "featureserver-test", "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := tileconsumer.New(st, core.NewCatalog([]*featurespec.View{v}), clk, tel.Meter, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: h, store: st, tel: tel, now: now}
}

func tile(count int64, startMs, maxEventMs int64) *tiles.Tile {
	return &tiles.Tile{View: "clicks", Entity: "u1", ResolutionMs: 300_000, StartMs: startMs, MaxEventMs: maxEventMs,
		Features: map[string]*tiles.IR{"count_1h": {Count: count}}}
}

func msg(t *testing.T, tl *tiles.Tile) kafka.Message {
	b, err := tl.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(tl.Key()), Value: b}
}

func scrape(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFlushWritesNewestStateAndRecordsFreshness(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	start := fx.now.UnixMilli() - 600_000 - fx.now.UnixMilli()%300_000
	for _, m := range []kafka.Message{
		msg(t, tile(1, start, fx.now.UnixMilli()-2_000)),
		{Key: []byte("junk"), Value: []byte("not json")},
		{Key: []byte("tombstone")},
		msg(t, tile(2, start, fx.now.UnixMilli()-500)), // same key: replaces the first
		msg(t, tile(7, start+300_000, fx.now.UnixMilli()-1_500)),
	} {
		if err := fx.h.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is written before Flush.
	if got, _ := fx.store.GetTiles(ctx, "clicks", "u1", nil); len(got) != 0 {
		t.Fatalf("before flush: %d tiles stored", len(got))
	}
	if err := fx.h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := fx.store.GetTiles(ctx, "clicks", "u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Full("clicks", "u1").Features["count_1h"].Count != 2 || got[1].Full("clicks", "u1").Features["count_1h"].Count != 7 {
		t.Fatalf("stored: %+v", got)
	}
	metrics := scrape(t, fx.tel)
	for _, want := range []string{
		"tributary_featureserver_freshness_seconds_count 2",
		// 0.5s and 1.5s: one under the 1s bucket, both under 2.5s.
		`tributary_featureserver_freshness_seconds_bucket{le="1"} 1`,
		`tributary_featureserver_freshness_seconds_bucket{le="2.5"} 2`,
		"tributary_featureserver_tiles_written_total 2",
		"tributary_featureserver_tiles_invalid_total 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A second flush with nothing new writes nothing.
	if err := fx.h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(scrape(t, fx.tel), "tributary_featureserver_tiles_written_total 2") {
		t.Error("an empty flush wrote tiles")
	}
}

// FuzzHandle feeds arbitrary record values to the consumer: it never
// fails the stream, and what it stores is a valid tile.
func FuzzHandle(f *testing.F) {
	fx := newFixture(f)
	good, _ := tile(3, 1_699_999_800_000, 1_699_999_900_000).Encode()
	f.Add(good)
	f.Add([]byte(`{"view":"clicks","entity":"u","res_ms":300000,"start_ms":7,"features":{}}`))
	f.Add([]byte(`{"view":"clicks","entity":"u","features":{"a":null}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		if err := fx.h.Handle(ctx, kafka.Message{Value: b}); err != nil {
			t.Fatalf("handle: %v", err)
		}
		if err := fx.h.Flush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
	})
}
