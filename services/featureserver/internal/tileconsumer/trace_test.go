package tileconsumer_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracedTileMarkedServable: the span of a sampled tile record (the
// consumer's process span, in Handle's context) gets a "tile servable"
// event naming the tile and its freshness once Flush wrote the tile, not
// before; a tile under a span that does not record gets nothing.
func TestTracedTileMarkedServable(t *testing.T) {
	fx := newFixture(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	start := fx.now.UnixMilli() - fx.now.UnixMilli()%300_000
	traced := tile(3, start, fx.now.UnixMilli()-250)
	ctx, span := tp.Tracer("test").Start(context.Background(), "process features.tiles")
	if err := fx.h.Handle(ctx, msg(t, traced)); err != nil {
		t.Fatal(err)
	}
	other := tile(1, start-300_000, fx.now.UnixMilli()-1000)
	if err := fx.h.Handle(context.Background(), msg(t, other)); err != nil {
		t.Fatal(err)
	}
	if evs := span.(sdktrace.ReadOnlySpan).Events(); len(evs) != 0 {
		t.Fatalf("events before the flush: %v", evs)
	}
	if err := fx.h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans ended, want 1", len(ended))
	}
	evs := ended[0].Events()
	if len(evs) != 1 || evs[0].Name != "tile servable" {
		t.Fatalf("events %v, want one \"tile servable\"", evs)
	}
	attrs := map[string]string{}
	for _, a := range evs[0].Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if attrs["tributary.tile.key"] != traced.Key() || attrs["tributary.freshness_seconds"] != "0.25" {
		t.Errorf("event attributes %v, want the tile key %s and freshness 0.25", attrs, traced.Key())
	}
}
