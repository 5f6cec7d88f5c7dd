package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Brokers []string
	// Topic is the default topic; messages may name their own when empty.
	Topic string
	// BatchSize and BatchTimeout bound how long a record waits for its batch.
	BatchSize    int
	BatchTimeout time.Duration
	// Balancer picks partitions; hash of the key by default, so one key stays in order.
	Balancer kafkago.Balancer
	// Tracer, when set, makes a PRODUCER span "send <topic>" for a write
	// whose context is sampled or that holds records carrying sampled
	// trace contexts (it links to those, at most MaxLinks). Other writes
	// cost no span.
	Tracer trace.Tracer
}

// Producer writes records and returns once all in-sync replicas acknowledged them.
type Producer struct {
	w      *kafkago.Writer
	tracer trace.Tracer
}

// NewProducer builds a producer. It connects lazily.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("producer: no brokers")
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = 5 * time.Millisecond
	}
	if cfg.Balancer == nil {
		cfg.Balancer = &kafkago.Hash{}
	}
	return &Producer{w: &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
		Balancer:               cfg.Balancer,
		BatchSize:              cfg.BatchSize,
		BatchTimeout:           cfg.BatchTimeout,
		RequiredAcks:           kafkago.RequireAll,
		AllowAutoTopicCreation: true,
		MaxAttempts:            5,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
	}, tracer: cfg.Tracer}, nil
}

// Write writes msgs and returns when Kafka acknowledged all of them. Every
// message carries W3C trace context: a message that has none of its own
// gets ctx's, and when ctx carries no trace either, the batch starts a new
// trace, so consumers can always correlate what they read.
func (p *Producer) Write(ctx context.Context, msgs ...Message) (err error) {
	if p.tracer != nil {
		if span := p.startSend(ctx, msgs); span != nil {
			ctx = trace.ContextWithSpan(ctx, span)
			defer func() { EndSpan(span, err) }()
		}
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, newRootSpanContext())
	}
	// One trace context for the whole write: rendered once, and the records
	// without headers of their own share the rendered headers (full
	// capacity, so appending to one record's headers copies them).
	var shared []Header
	for i := range msgs {
		m := &msgs[i]
		switch {
		case len(m.Headers) == 0:
			if shared == nil {
				var h []Header
				traceContext.Inject(ctx, headerCarrier{&h})
				shared = h[:len(h):len(h)]
			}
			m.Headers = shared
		case !hasHeader(m.Headers, traceparent):
			InjectTrace(ctx, m)
		}
	}
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		if attempt >= topicAttempts || !topicNotReady(err) || !waitBackoff(ctx, backoff) {
			return fmt.Errorf("write %d messages: %w", len(msgs), err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// topicAttempts bounds the writes of one batch while its topic is being
// created (about 10s with the backoff).
const topicAttempts = 14

// topicNotReady reports whether a write failed before any record was sent
// because the topic's metadata did not list it (yet): Apache Kafka creates
// an auto-created topic after answering the metadata request that asked
// for it, with UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE, and
// kafka-go's Writer returns that error without retrying. (The embedded
// broker creates the topic before it answers, which hid this.) Errors of
// records that were sent (kafkago.WriteErrors) are the Writer's own
// retries' business and are not retried here, so no record is written twice.
func topicNotReady(err error) bool {
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		return false
	}
	return errors.Is(err, kafkago.UnknownTopicOrPartition) || errors.Is(err, kafkago.LeaderNotAvailable)
}

// startSend starts the send span of a write when the write is traced (see
// ProducerConfig.Tracer); it returns nil otherwise.
func (p *Producer) startSend(ctx context.Context, msgs []Message) trace.Span {
	var links Links
	topic := p.w.Topic
	for i := range msgs {
		m := &msgs[i]
		if topic == "" {
			topic = m.Topic
		} else if m.Topic != "" && m.Topic != topic {
			topic = "-" // several topics
		}
		if Sampled(m) {
			links.Add(RecordContext(m))
		}
	}
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		if links.Len() == 0 {
			return nil
		}
		// Continue the first record's trace (a root would be subject to
		// the root sampler, which may drop it).
		ctx = trace.ContextWithSpanContext(ctx, links.First())
	}
	if topic == "-" {
		topic = ""
	}
	opts := append(links.Options(), trace.WithAttributes(semconv.MessagingBatchMessageCount(len(msgs))))
	_, span := StartSend(ctx, p.tracer, topic, opts...)
	return span
}

// Stats returns the writer's counters since the last call.
func (p *Producer) Stats() kafkago.WriterStats { return p.w.Stats() }

// Close flushes pending messages and closes connections.
func (p *Producer) Close() error { return p.w.Close() }

const traceparent = "traceparent"

func hasHeader(hs []Header, key string) bool {
	for _, h := range hs {
		if h.Key == key {
			return true
		}
	}
	return false
}

// newRootSpanContext starts a trace for records produced outside any traced
// call. It is not sampled: it exists so that the records of one batch, and
// what consumers do with them, share a trace id.
func newRootSpanContext() trace.SpanContext {
	var tid trace.TraceID
	var sid trace.SpanID
	binary.LittleEndian.PutUint64(tid[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(tid[8:], rand.Uint64())
	binary.LittleEndian.PutUint64(sid[:], rand.Uint64()|1)
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
}
