package sink_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest/internal/core"
	"github.com/tributary-ml/tributary/services/ingest/internal/sink"
)

// TestWriterTracesTransactions: with a tracer, each transaction is one
// PRODUCER span that starts at its commit time (also an attribute) and
// counts its records, even when the transaction spans several batches;
// its records carry the span's context; snapshot records get no span.
func TestWriterTracesTransactions(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	w := &sink.Writer{Producer: producer(t, broker), Progress: core.NewProgress(100), Log: quiet, Tracer: tp.Tracer("test")}
	in := make(chan *core.Batch, 8)
	stop := run(w, in)
	defer stop()

	commitA := time.Date(2026, 1, 2, 3, 4, 5, 123000, time.UTC)
	commitB := commitA.Add(time.Second)
	in <- &core.Batch{Records: []core.Record{rec("cdc.public.snap", "public.snap", "r", `{"id":1}`, `{"n":0}`)}}
	in <- &core.Batch{TxnLSN: 0x1_00000500, CommitTime: commitA, Records: []core.Record{
		rec("cdc.public.t1", "public.t1", "c", `{"id":1}`, `{"n":1}`),
		rec("cdc.public.t1", "public.t1", "c", `{"id":2}`, `{"n":2}`),
	}}
	in <- &core.Batch{TxnLSN: 0x1_00000500, CommitTime: commitA, CommitEnd: 0x1_00000510, Records: []core.Record{
		rec("cdc.public.t1", "public.t1", "u", `{"id":1}`, `{"n":3}`),
	}}
	in <- &core.Batch{TxnLSN: 0x1_00000600, CommitTime: commitB, CommitEnd: 0x1_00000610, Records: []core.Record{
		rec("cdc.public.t1", "public.t1", "c", `{"id":3}`, `{"n":4}`),
		rec("cdc.public.t2", "public.t2", "c", `{"id":1}`, `{"n":5}`),
	}}
	done := make(chan struct{})
	in <- &core.Batch{Done: done}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Done not closed 20s after the batches were handed over")
	}

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans %v, want one per transaction (2)", len(spans), names(spans))
	}
	a, b := spans[0], spans[1]
	if a.Name != "send cdc.public.t1" || b.Name != "send" {
		t.Errorf("span names %q, %q; want %q (one topic) and %q (two topics)", a.Name, b.Name, "send cdc.public.t1", "send")
	}
	for _, c := range []struct {
		s      tracetest.SpanStub
		commit time.Time
		n, lsn string
	}{{a, commitA, "3", "1/500"}, {b, commitB, "2", "1/600"}} {
		if !c.s.StartTime.Equal(c.commit) {
			t.Errorf("%s starts at %s, want the commit time %s", c.s.Name, c.s.StartTime, c.commit)
		}
		if c.s.SpanKind != trace.SpanKindProducer || c.s.Parent.IsValid() {
			t.Errorf("%s: kind %v parent %v, want a producer root", c.s.Name, c.s.SpanKind, c.s.Parent)
		}
		wantAttr(t, c.s, "messaging.batch.message_count", c.n)
		wantAttr(t, c.s, "messaging.system", "kafka")
		wantAttr(t, c.s, "tributary.cdc.commit_lsn", c.lsn)
		wantAttr(t, c.s, "tributary.cdc.commit_time", c.commit.Format(time.RFC3339Nano))
	}
	wantAttr(t, a, "messaging.destination.name", "cdc.public.t1")

	t1 := readAll(t, broker, "cdc.public.t1", 4)
	for i, m := range t1 {
		want := a.SpanContext
		if i == 3 {
			want = b.SpanContext
		}
		if sc := kafka.RecordContext(&m); sc.TraceID() != want.TraceID() || sc.SpanID() != want.SpanID() || !sc.IsSampled() {
			t.Errorf("record %d of cdc.public.t1 carries %v, want its transaction's span %v", i, sc, want)
		}
	}
	snap := readAll(t, broker, "cdc.public.snap", 1)
	if sc := kafka.RecordContext(&snap[0]); !sc.IsValid() || sc.IsSampled() || sc.TraceID() == a.SpanContext.TraceID() {
		t.Errorf("snapshot record carries %v, want an unsampled trace of its own", sc)
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func wantAttr(t *testing.T, s tracetest.SpanStub, key, want string) {
	t.Helper()
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			if got := a.Value.Emit(); got != want {
				t.Errorf("%s: %s = %q, want %q", s.Name, key, got, want)
			}
			return
		}
	}
	t.Errorf("%s: no attribute %s (have %v)", s.Name, key, s.Attributes)
}
