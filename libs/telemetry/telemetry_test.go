package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestSpanTracer: without an exporter there is no span tracer (hot paths
// skip span work) though the gRPC tracer still makes trace ids; with one,
// root spans are sampled and reach the exporter when they end.
func TestSpanTracer(t *testing.T) {
	ctx := context.Background()
	off, err := New(ctx, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = off.Shutdown(ctx) }()
	if off.SpanTracer() != nil {
		t.Error("SpanTracer is set although spans go nowhere")
	}
	_, span := off.Tracer.Start(ctx, "call")
	if !span.SpanContext().IsValid() || span.SpanContext().IsSampled() {
		t.Errorf("without an exporter a span should have ids and not be sampled: %v", span.SpanContext())
	}
	span.End()

	exp := tracetest.NewInMemoryExporter()
	on, err := New(ctx, "test", "", WithSpanExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = on.Shutdown(ctx) }()
	tr := on.SpanTracer()
	if tr == nil {
		t.Fatal("no SpanTracer with an exporter")
	}
	_, span = tr.Start(ctx, "root")
	if !span.SpanContext().IsSampled() {
		t.Error("a root span is not sampled with an exporter")
	}
	span.End()
	if got := exp.GetSpans(); len(got) != 1 || got[0].Name != "root" {
		t.Errorf("exported %v, want the root span", got)
	}
}
