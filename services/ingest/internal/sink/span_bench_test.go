package sink

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
)

// BenchmarkTxnSpan is the tracing work of one traced transaction of one
// row (span with attributes, its traceparent rendered once, ended and
// handed to a no-op exporter): the most tracing adds per transaction.
func BenchmarkTxnSpan(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("bench")
	ctx := context.Background()
	batch := &core.Batch{TxnLSN: 0x1_00000500, CommitTime: time.Now(), CommitEnd: 0x1_00000510,
		Records: []core.Record{{Topic: "cdc.public.t", Key: []byte(`{"id":1}`), Value: []byte(`{}`)}}}
	b.ReportAllocs()
	cpu0 := testutil.ProcessCPU(b)
	for b.Loop() {
		t := startTxnSpan(ctx, tr, batch)
		t.add(batch.Records)
		t.end(nil)
	}
	// CPU time per transaction: on a loaded machine ns/op (wall clock)
	// includes waiting for a core.
	b.ReportMetric(float64(testutil.ProcessCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
