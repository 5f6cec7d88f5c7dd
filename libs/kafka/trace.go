package kafka

import (
	"context"
	"strconv"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Spans follow the OpenTelemetry messaging semantic conventions: a
// PRODUCER span "send <topic>" for a write and a CONSUMER span
// "process <topic>" for a record handled, with the messaging.* attributes
// below. Only records whose trace is sampled cost spans: the check
// (Sampled) reads one header byte, so unsampled traffic pays next to
// nothing.

// MaxLinks bounds the links one span carries (the SDK's default limit is
// 128; a batch of thousands of sampled records links to the first ones).
const MaxLinks = 64

// maxKeyAttr bounds the record keys recorded as messaging.kafka.message.key.
const maxKeyAttr = 256

// Sampled reports whether m carries a W3C traceparent whose sampled flag is
// set. It allocates nothing.
func Sampled(m *Message) bool {
	for i := range m.Headers {
		if m.Headers[i].Key == traceparent {
			return SampledTraceparent(m.Headers[i].Value)
		}
	}
	return false
}

// SampledTraceparent reports whether v, a traceparent header value
// (version-traceid-spanid-flags), has the sampled flag set.
func SampledTraceparent(v []byte) bool {
	// 00-<32 hex>-<16 hex>-<2 hex>: the flags' low nibble is the last byte.
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	var nib byte
	switch c := v[54]; {
	case c >= '0' && c <= '9':
		nib = c - '0'
	case c >= 'a' && c <= 'f':
		nib = c - 'a' + 10
	default:
		return false
	}
	return nib&1 == 1
}

// SpanContextOf returns the span context of a traceparent header value
// (invalid when it does not parse).
func SpanContextOf(traceparentValue []byte) trace.SpanContext {
	h := []Header{{Key: traceparent, Value: traceparentValue}}
	return trace.SpanContextFromContext(traceContext.Extract(context.Background(), headerCarrier{&h}))
}

// Traceparent renders sc as a traceparent header value.
func Traceparent(sc trace.SpanContext) []byte {
	var h []Header
	traceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc), headerCarrier{&h})
	for _, x := range h {
		if x.Key == traceparent {
			return x.Value
		}
	}
	return nil
}

// RecordContext returns the span context m's headers carry (invalid without one).
func RecordContext(m *Message) trace.SpanContext {
	for i := range m.Headers {
		if m.Headers[i].Key == traceparent {
			return SpanContextOf(m.Headers[i].Value)
		}
	}
	return trace.SpanContext{}
}

// MessagingAttrs are the attributes every Kafka span carries.
func MessagingAttrs(operation, topic string) []attribute.KeyValue {
	op := semconv.MessagingOperationTypeSend
	switch operation {
	case "process":
		op = semconv.MessagingOperationTypeProcess
	case "create":
		op = semconv.MessagingOperationTypeCreate
	case "receive":
		op = semconv.MessagingOperationTypeReceive
	}
	attrs := []attribute.KeyValue{semconv.MessagingSystemKafka, semconv.MessagingOperationName(operation), op}
	if topic != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(topic))
	}
	return attrs
}

// RecordAttrs describe one record: its partition, offset (when read) and
// key (when short text).
func RecordAttrs(m *Message, withOffset bool) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.MessagingDestinationPartitionID(strconv.Itoa(m.Partition))}
	if withOffset {
		attrs = append(attrs, semconv.MessagingKafkaOffset(int(m.Offset)))
	}
	if k := KeyAttr(m.Key); k.Valid() {
		attrs = append(attrs, k)
	}
	if m.Value == nil {
		attrs = append(attrs, semconv.MessagingKafkaMessageTombstone(true))
	}
	return attrs
}

// KeyAttr is messaging.kafka.message.key for a short UTF-8 key, and an
// invalid (empty) attribute otherwise.
func KeyAttr(key []byte) attribute.KeyValue {
	if len(key) == 0 || len(key) > maxKeyAttr || !utf8.Valid(key) {
		return attribute.KeyValue{}
	}
	return semconv.MessagingKafkaMessageKey(string(key))
}

// StartProcess starts the CONSUMER span "process <topic>" of m, a child of
// the context m carries; group is the consumer group (may be empty).
func StartProcess(ctx context.Context, tr trace.Tracer, m *Message, group string) (context.Context, trace.Span) {
	tm := *m // the propagator keeps a pointer to the headers
	parent := ExtractTrace(ctx, &tm)
	attrs := append(MessagingAttrs("process", m.Topic), RecordAttrs(m, true)...)
	if group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(group))
	}
	return tr.Start(parent, "process "+m.Topic, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// StartSend starts the PRODUCER span "send <topic>" ("send" when the
// records go to several topics: topic empty) as a child of ctx.
func StartSend(ctx context.Context, tr trace.Tracer, topic string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	name := "send"
	if topic != "" {
		name += " " + topic
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(MessagingAttrs("send", topic)...))
	return tr.Start(ctx, name, opts...)
}

// EndSpan ends span, marking it failed when err is not nil.
func EndSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Links collects the span contexts a batch links to, at most MaxLinks
// distinct ones; Dropped counts those added beyond the bound.
type Links struct {
	links   []trace.Link
	Dropped int
}

// Add adds sc (ignored when invalid or already present).
func (l *Links) Add(sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	for _, x := range l.links {
		if x.SpanContext.Equal(sc) {
			return
		}
	}
	if len(l.links) >= MaxLinks {
		l.Dropped++
		return
	}
	l.links = append(l.links, trace.Link{SpanContext: sc})
}

// Len is the number of links kept.
func (l *Links) Len() int { return len(l.links) }

// First is the first link's span context.
func (l *Links) First() trace.SpanContext {
	if len(l.links) == 0 {
		return trace.SpanContext{}
	}
	return l.links[0].SpanContext
}

// Options are the span start options for the links kept (and the count of
// those dropped).
func (l *Links) Options() []trace.SpanStartOption {
	if len(l.links) == 0 {
		return nil
	}
	opts := []trace.SpanStartOption{trace.WithLinks(l.links...)}
	if l.Dropped > 0 {
		opts = append(opts, trace.WithAttributes(attribute.Int("tributary.links.dropped", l.Dropped)))
	}
	return opts
}

// Reset empties l for reuse.
func (l *Links) Reset() {
	clear(l.links)
	l.links, l.Dropped = l.links[:0], 0
}
