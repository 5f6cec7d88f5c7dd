// Package kafka is Tributary's Kafka client on segmentio/kafka-go: a batching
// producer that waits for acknowledgement from all in-sync replicas, a
// consumer-group consumer that commits offsets only after the records were
// processed (and flushed), and W3C trace context carried in message headers.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
)

// Message is a Kafka record.
type Message = kafkago.Message

// Header is a Kafka record header.
type Header = kafkago.Header

// headerCarrier adapts record headers to a propagation carrier.
type headerCarrier struct{ h *[]Header }

func (c headerCarrier) Get(key string) string {
	for _, h := range *c.h {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	for i, h := range *c.h {
		if h.Key == key {
			(*c.h)[i].Value = []byte(value)
			return
		}
	}
	*c.h = append(*c.h, Header{Key: key, Value: []byte(value)})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.h))
	for i, h := range *c.h {
		keys[i] = h.Key
	}
	return keys
}

var traceContext = propagation.TraceContext{}

// InjectTrace writes ctx's W3C trace context (traceparent, tracestate) into m's headers.
func InjectTrace(ctx context.Context, m *Message) {
	traceContext.Inject(ctx, headerCarrier{&m.Headers})
}

// ExtractTrace returns ctx carrying the trace context found in m's headers.
func ExtractTrace(ctx context.Context, m *Message) context.Context {
	return traceContext.Extract(ctx, headerCarrier{&m.Headers})
}

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name       string
	Partitions int
	// Compacted sets cleanup.policy=compact (for features.tiles).
	Compacted bool
}

// EnsureTopics creates the topics that do not exist yet.
func EnsureTopics(ctx context.Context, brokers []string, topics ...TopicSpec) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: no brokers")
	}
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("dial kafka %s: %w", brokers[0], err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find kafka controller: %w", err)
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("dial kafka controller: %w", err)
	}
	defer cc.Close()
	cfgs := make([]kafkago.TopicConfig, 0, len(topics))
	for _, t := range topics {
		tc := kafkago.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: 1}
		if tc.NumPartitions == 0 {
			tc.NumPartitions = -1
		}
		if t.Compacted {
			tc.ConfigEntries = []kafkago.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
		}
		cfgs = append(cfgs, tc)
	}
	if err := cc.CreateTopics(cfgs...); err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
		return fmt.Errorf("create topics: %w", err)
	}
	return nil
}

// waitBackoff sleeps for d or until ctx ends; it reports whether ctx is still live.
func waitBackoff(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
