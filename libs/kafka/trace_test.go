package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/testutil"
)

func TestSampledTraceparent(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    string
		want bool
	}{
		{"sampled", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01", true},
		{"not sampled", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-00", false},
		{"other flags with sampled", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-03", true},
		{"other flags without", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-02", false},
		{"too short", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-0", false},
		{"not hex", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-0x", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SampledTraceparent([]byte(tc.v)); got != tc.want {
				t.Errorf("SampledTraceparent(%q) = %v, want %v", tc.v, got, tc.want)
			}
			m := Message{Headers: []Header{{Key: "x", Value: []byte("y")}, {Key: traceparent, Value: []byte(tc.v)}}}
			if got := Sampled(&m); got != tc.want {
				t.Errorf("Sampled = %v, want %v", got, tc.want)
			}
		})
	}
	if Sampled(&Message{}) {
		t.Error("a record without headers is sampled")
	}
}

// FuzzTraceparent: the cheap sampled check agrees with the propagator on
// every header the propagator accepts, and neither panics.
func FuzzTraceparent(f *testing.F) {
	f.Add([]byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"))
	f.Add([]byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-00"))
	f.Add([]byte("01-0102030405060708090a0b0c0d0e0f10-0102030405060708-09-extra"))
	f.Add([]byte("00-00000000000000000000000000000000-0102030405060708-01"))
	f.Fuzz(func(t *testing.T, v []byte) {
		cheap := SampledTraceparent(v)
		sc := SpanContextOf(v)
		if sc.IsValid() && sc.IsSampled() != cheap {
			t.Fatalf("%q: propagator says sampled=%v, SampledTraceparent %v", v, sc.IsSampled(), cheap)
		}
		if sc.IsValid() {
			if back := SpanContextOf(Traceparent(sc)); !back.Equal(sc.WithTraceState(trace.TraceState{})) {
				t.Fatalf("%q: round trip gave %v, want %v", v, back, sc)
			}
		}
	})
}

func TestLinksBounded(t *testing.T) {
	var l Links
	for i := range MaxLinks + 10 {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i), 1}, SpanID: trace.SpanID{byte(i), 1}})
		l.Add(sc)
		if i < MaxLinks {
			l.Add(sc) // a duplicate of a kept link is not kept twice
		}
	}
	l.Add(trace.SpanContext{}) // invalid: ignored
	if l.Len() != MaxLinks || l.Dropped != 10 {
		t.Fatalf("links %d dropped %d, want %d and 10", l.Len(), l.Dropped, MaxLinks)
	}
	l.Reset()
	if l.Len() != 0 || l.Dropped != 0 || l.Options() != nil {
		t.Fatalf("after Reset: %d links, %d dropped", l.Len(), l.Dropped)
	}
}

// spanCollector is a Handler recording what it saw, and whether the span in
// each record's context was still open (recording) when Handle ran.
type spanCollector struct {
	recorder
	exp *tracetest.InMemoryExporter
	// sampledFlushed is the sampled records handled before the last flush;
	// bad notes a flush at which process spans had ended too early or not
	// at all.
	sampledFlushed int
	bad            []string
}

func (s *spanCollector) Flush(ctx context.Context) error {
	ended := 0
	for _, sp := range s.exp.GetSpans() {
		if sp.SpanKind == trace.SpanKindConsumer {
			ended++
		}
	}
	s.mu.Lock()
	sampled := 0
	for _, sc := range s.traces {
		if sc.IsSampled() {
			sampled++
		}
	}
	if ended != s.sampledFlushed {
		s.bad = append(s.bad, fmt.Sprintf("at a flush %d process spans had ended, want the %d of records flushed before", ended, s.sampledFlushed))
	}
	s.sampledFlushed = sampled
	s.mu.Unlock()
	return s.recorder.Flush(ctx)
}

// TestTracedProduceConsume: a traced write makes one PRODUCER span, its
// records carry its context, and the consumer makes one CONSUMER span per
// sampled record, a child of the send span, ended only after the flush
// that made the record durable; records of an unsampled trace make no
// span.
func TestTracedProduceConsume(t *testing.T) {
	addr := testutil.Kafka(t, 2)
	ctx := testutil.Context(t, 60*time.Second)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("test")

	p, err := NewProducer(ProducerConfig{Brokers: []string{addr}, Topic: "traced", Tracer: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	rctx, root := tr.Start(ctx, "root")
	if err := p.Write(rctx, Message{Key: []byte("a"), Value: []byte("1")}, Message{Key: []byte("b"), Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	root.End()
	// An unsampled trace: no producer span, no consumer span.
	unsampled := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}}))
	if err := p.Write(unsampled, Message{Key: []byte("u"), Value: []byte("3")}); err != nil {
		t.Fatal(err)
	}

	c, err := NewConsumer(ConsumerConfig{Brokers: []string{addr}, GroupID: "tg", Topics: []string{"traced"}, Tracer: tr, IgnoreTrace: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &spanCollector{exp: exp}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx, h) }()
	testutil.Eventually(t, 30*time.Second, "three records handled and flushed", func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.flushed < 3 {
			return fmt.Errorf("%d flushed", h.flushed)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	spans := exp.GetSpans()
	var send tracetest.SpanStub
	var process []tracetest.SpanStub
	for _, s := range spans {
		switch s.Name {
		case "send traced":
			if send.Name != "" {
				t.Errorf("two send spans: the unsampled write made one")
			}
			send = s
		case "process traced":
			process = append(process, s)
		}
	}
	if send.Name == "" {
		t.Fatalf("no send span among %v", names(spans))
	}
	if send.SpanKind != trace.SpanKindProducer || send.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("send span kind %v parent %v, want producer under the root", send.SpanKind, send.Parent.SpanID())
	}
	wantAttr(t, send.Attributes, "messaging.system", "kafka")
	wantAttr(t, send.Attributes, "messaging.destination.name", "traced")
	wantAttr(t, send.Attributes, "messaging.batch.message_count", "2")
	if len(process) != 2 {
		t.Fatalf("%d process spans, want 2 (one per sampled record): %v", len(process), names(spans))
	}
	for _, s := range process {
		if s.SpanKind != trace.SpanKindConsumer || s.Parent.SpanID() != send.SpanContext.SpanID() {
			t.Errorf("process span kind %v parent %v, want consumer under the send span %v", s.SpanKind, s.Parent.SpanID(), send.SpanContext.SpanID())
		}
		wantAttr(t, s.Attributes, "messaging.consumer.group.name", "tg")
		wantAttr(t, s.Attributes, "messaging.operation.type", "process")
		if _, ok := attr(s.Attributes, "messaging.kafka.offset"); !ok {
			t.Errorf("process span without offset: %v", s.Attributes)
		}
		if _, ok := attr(s.Attributes, "messaging.destination.partition.id"); !ok {
			t.Errorf("process span without partition: %v", s.Attributes)
		}
	}
	// The handler saw the process span's context, not the send span's.
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.bad {
		t.Error(b)
	}
	for i, m := range h.handled {
		sc := h.traces[i]
		switch string(m.Key) {
		case "u":
			if sc.IsValid() {
				t.Errorf("unsampled record handed a span context %v (IgnoreTrace)", sc)
			}
		default:
			if sc.TraceID() != root.SpanContext().TraceID() || sc.SpanID() == send.SpanContext.SpanID() {
				t.Errorf("record %s handled under %v, want its process span in trace %v", m.Key, sc, root.SpanContext().TraceID())
			}
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(attrs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, a := range attrs {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, attrs []attribute.KeyValue, key, want string) {
	t.Helper()
	v, ok := attr(attrs, key)
	if !ok || v.Emit() != want {
		t.Errorf("%s = %q (present %v), want %q", key, v.Emit(), ok, want)
	}
}

// BenchmarkSampled is the per-record cost of tracing for an unsampled
// record (one header: its traceparent).
func BenchmarkSampled(b *testing.B) {
	m := Message{Headers: []Header{{Key: traceparent, Value: []byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-00")}}}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if Sampled(&m) {
			n++
		}
	}
	if n != 0 {
		b.Fatal("unsampled record reported sampled")
	}
}
