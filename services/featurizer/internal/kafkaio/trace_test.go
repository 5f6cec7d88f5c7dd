package kafkaio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// TestTraceFollowsSampledRecordToItsTiles: among many unsampled click
// events, one carries a sampled trace. Its trace must continue through
// the featurizer — process events.clicks → send featurizer.repartition →
// process featurizer.repartition → send features.tiles — and reach
// exactly the tiles of its user, whose records carry the last span's
// context; the unsampled events cost no span at all.
func TestTraceFollowsSampledRecordToItsTiles(t *testing.T) {
	broker := testutil.Kafka(t, 2)
	brokers := []string{broker}
	ctx := testutil.Context(t, 2*time.Minute)
	view, err := featurespec.Parse("crash.yaml", []byte(crashView))
	if err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: "events.clicks", Partitions: 2},
		kafka.TopicSpec{Name: tiles.Topic, Partitions: 2, Compacted: true},
		kafka.TopicSpec{Name: aggregate.RepartitionTopic, Partitions: repartitions}); err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("test")

	src, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, Topic: "events.clicks"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	event := func(user string, i int) kafka.Message {
		v, _ := json.Marshal(map[string]any{"user_id": user, "ts": t0 + int64(i)*1000, "x": i, "page": "p"})
		return kafka.Message{Key: []byte(user), Value: v}
	}
	var plain []kafka.Message
	for i := range 300 {
		plain = append(plain, event(fmt.Sprint("u", i%30), i))
	}
	// Unsampled: the producer gives them a trace of their own that is not sampled.
	if err := src.Write(ctx, plain[:150]...); err != nil {
		t.Fatal(err)
	}
	rootCtx, root := tr.Start(ctx, "client")
	if err := src.Write(rootCtx, event("traced", 1000)); err != nil {
		t.Fatal(err)
	}
	root.End()
	if err := src.Write(ctx, plain[150:]...); err != nil {
		t.Fatal(err)
	}
	_ = src.Close()

	tileOut, err := kafka.NewKeyedWriter(ctx, brokers, tiles.Topic)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tileOut.Close() }()
	routedOut, err := kafka.NewProducer(RoutedProducerConfig(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = routedOut.Close() }()
	p := startTracedProcess(t, ctx, brokers, []*featurespec.View{view}, routedOut, tileOut, 100000, 50*time.Millisecond, nil, tr)
	testutil.Eventually(t, time.Minute, "all events aggregated", func() error {
		return caughtUp(ctx, brokers, 2, []*RouteHandler{p.route}, []*Aggregator{p.agg})
	})
	testutil.Eventually(t, 30*time.Second, "the traced tiles' send spans", func() error {
		for _, s := range exp.GetSpans() {
			if s.Name == "send "+tiles.Topic {
				return nil
			}
		}
		return fmt.Errorf("spans so far: %v", spanNames(exp.GetSpans()))
	})
	if srcErr, aggErr := p.stop(); srcErr != nil || aggErr != nil {
		t.Fatalf("source stage %v, aggregation stage %v", srcErr, aggErr)
	}

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = append(byName[s.Name], s)
	}
	one := func(name string) tracetest.SpanStub {
		t.Helper()
		if len(byName[name]) != 1 {
			t.Fatalf("%d spans %q, want 1 (spans: %v)", len(byName[name]), name, spanNames(exp.GetSpans()))
		}
		return byName[name][0]
	}
	process := one("process events.clicks")
	batch := one("send " + aggregate.RepartitionTopic)
	apply := one("process " + aggregate.RepartitionTopic)
	chain := []struct {
		child, parent tracetest.SpanStub
	}{{batch, process}, {apply, batch}}
	if process.Parent.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("source process span is in trace %v, want the client's %v", process.Parent.TraceID(), root.SpanContext().TraceID())
	}
	for _, c := range chain {
		if c.child.Parent.SpanID() != c.parent.SpanContext.SpanID() {
			t.Errorf("%s's parent is %v, want %s (%v)", c.child.Name, c.child.Parent.SpanID(), c.parent.Name, c.parent.SpanContext.SpanID())
		}
	}
	tileSpans := byName["send "+tiles.Topic]
	spanOf := map[string]trace.SpanContext{}
	for _, s := range tileSpans {
		key := ""
		for _, a := range s.Attributes {
			if a.Key == "messaging.kafka.message.key" {
				key = a.Value.AsString()
			}
		}
		if !strings.HasPrefix(key, "clicks|traced|") {
			t.Errorf("tile span for key %q: only the traced user's tiles should be traced", key)
		}
		if s.Parent.SpanID() != apply.SpanContext.SpanID() {
			t.Errorf("tile span %s: parent %v, want the aggregator's span %v", key, s.Parent.SpanID(), apply.SpanContext.SpanID())
		}
		linked := false
		for _, l := range s.Links {
			linked = linked || l.SpanContext.SpanID() == process.SpanContext.SpanID()
		}
		if !linked {
			t.Errorf("tile span %s does not link to the source record's span", key)
		}
		spanOf[key] = s.SpanContext
	}
	// The traced user's tile records carry their spans; nobody else's is sampled.
	n, err := kafka.ReadAll(ctx, brokers, tiles.Topic, func(m kafka.Message) error {
		sc := kafka.RecordContext(&m)
		want, traced := spanOf[string(m.Key)]
		switch {
		case traced && (sc.SpanID() != want.SpanID() || !sc.IsSampled()):
			t.Errorf("tile %s carries %v, want its send span %v", m.Key, sc, want)
		case !traced && bytes.HasPrefix(m.Key, []byte("clicks|traced|")):
			t.Errorf("tile %s of the traced user has no send span", m.Key)
		case !traced && sc.IsSampled():
			t.Errorf("tile %s of an untraced user carries a sampled context %v", m.Key, sc)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("read tiles: %d, %v", n, err)
	}
	if len(spanOf) == 0 {
		t.Fatal("no tile of the traced user was traced")
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func TestLinkHeaderRoundTrip(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	keys := []string{"clicks|u1", "", "v|a|b"}
	got, gotKeys, err := decodeLink(encodeLink(kafka.Traceparent(sc), keys))
	if err != nil {
		t.Fatal(err)
	}
	if !sameSpan(got, sc) || len(gotKeys) != len(keys) {
		t.Fatalf("decoded %v %q, want %v %q", got, gotKeys, sc, keys)
	}
	for i := range keys {
		if string(gotKeys[i]) != keys[i] {
			t.Errorf("key %d = %q, want %q", i, gotKeys[i], keys[i])
		}
	}
	for _, bad := range []string{"", "00-01", string(kafka.Traceparent(sc)) + "\x05ab"} {
		if _, _, err := decodeLink([]byte(bad)); err == nil {
			t.Errorf("decodeLink(%q) accepted it", bad)
		}
	}
}

// FuzzLinkHeader: the decoder of the link header never panics and reads
// back what the encoder wrote.
func FuzzLinkHeader(f *testing.F) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	f.Add(encodeLink(kafka.Traceparent(sc), []string{"clicks|u1"}))
	f.Add([]byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01\xff\xff"))
	f.Fuzz(func(t *testing.T, v []byte) {
		got, keys, err := decodeLink(v)
		if err != nil {
			return
		}
		ks := make([]string, len(keys))
		for i, k := range keys {
			ks[i] = string(k)
		}
		again, keys2, err := decodeLink(encodeLink(kafka.Traceparent(got), ks))
		if err != nil || !sameSpan(again, got) || len(keys2) != len(keys) {
			t.Fatalf("%q: round trip gave %v %q %v", v, again, keys2, err)
		}
	})
}

func TestEntityOf(t *testing.T) {
	for key, want := range map[string]string{
		"clicks|u1|300000|1700000000000": "clicks|u1",
		"v|a|b|60000|0":                  "v|a|b",
		"nokey":                          "",
		"a|b":                            "",
	} {
		if got := string(entityOf([]byte(key))); got != want {
			t.Errorf("entityOf(%q) = %q, want %q", key, got, want)
		}
	}
}

func sameSpan(a, b trace.SpanContext) bool {
	return a.TraceID() == b.TraceID() && a.SpanID() == b.SpanID() && a.TraceFlags() == b.TraceFlags()
}
