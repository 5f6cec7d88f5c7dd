// Package kafka is Tributary's Kafka client on segmentio/kafka-go: a batching
// producer that waits for acknowledgement from all in-sync replicas, a
// consumer-group consumer that commits offsets only after the records were
// processed (and flushed), W3C trace context carried in message headers, and,
// given a tracer, producer and consumer spans by the OpenTelemetry messaging
// conventions for the records whose trace is sampled (trace.go).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
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
	// ReplicationFactor is the copies of each partition (1 when 0).
	ReplicationFactor int
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
		tc := kafkago.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: max(t.ReplicationFactor, 1)}
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
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...)}
	if err := waitTopics(ctx, brokers, topics); err != nil {
		return err
	}
	// A topic that existed before (auto-created by a consumer, say) keeps its
	// cleanup policy; a topic we rely on being compacted must be.
	for _, t := range topics {
		if !t.Compacted {
			continue
		}
		// Apache Kafka answers for a topic it has just created with
		// UNKNOWN_TOPIC_OR_PARTITION until every broker knows it, and a
		// broker applies an altered config a moment after the controller
		// accepted it (the embedded broker does both at once, which hid
		// this): wait until the broker says compact.
		backoff := 20 * time.Millisecond
		altered := false
		for attempt := 1; ; attempt++ {
			compact, err := isCompacted(ctx, client, t.Name)
			if err == nil && compact {
				break
			}
			if err == nil && !altered {
				if err = makeCompacted(ctx, client, t.Name); err != nil {
					return err
				}
				altered = true
			}
			retry := err == nil || errors.Is(err, kafkago.UnknownTopicOrPartition)
			if err == nil {
				err = fmt.Errorf("topic %s: cleanup.policy not compact yet after altering it", t.Name)
			}
			if attempt >= topicAttempts || !retry || !waitBackoff(ctx, backoff) {
				return err
			}
			backoff = min(2*backoff, time.Second)
		}
	}
	return nil
}

// waitTopics returns when the cluster's metadata lists every topic with a
// leader for each partition: Apache Kafka answers CreateTopics before its
// brokers know the new topic, and a service's next request about it
// (partition count, offsets) would fail with UNKNOWN_TOPIC_OR_PARTITION.
// (The embedded broker knows a topic as soon as it is created.)
func waitTopics(ctx context.Context, brokers []string, topics []TopicSpec) error {
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := topicsReady(ctx, brokers, names)
		if err == nil {
			return nil
		}
		if attempt >= topicAttempts || !waitBackoff(ctx, backoff) {
			return fmt.Errorf("created topics not ready: %w", err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// topicsReady says which of names a broker's metadata does not list with a
// leader for every partition, if any. It asks a fresh connection: the
// kafka-go Client answers metadata from a cache.
func topicsReady(ctx context.Context, brokers []string, names []string) error {
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	parts, err := conn.ReadPartitions(names...)
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, p := range parts {
		if p.Error != nil || p.Leader.ID < 0 {
			return fmt.Errorf("topic %s partition %d: no leader (%v)", p.Topic, p.ID, p.Error)
		}
		count[p.Topic]++
	}
	for _, n := range names {
		if count[n] == 0 {
			return fmt.Errorf("topic %s: not listed", n)
		}
	}
	return nil
}

// isCompacted reports whether topic's cleanup.policy includes compact.
func isCompacted(ctx context.Context, client *kafkago.Client, topic string) (bool, error) {
	resp, err := client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
	}}})
	if err != nil {
		return false, fmt.Errorf("describe %s: %w", topic, err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return false, fmt.Errorf("describe %s: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" && strings.Contains(e.ConfigValue, "compact") {
				return true, nil
			}
		}
	}
	return false, nil
}

// makeCompacted sets topic's cleanup.policy to compact, leaving its other
// settings as they are.
func makeCompacted(ctx context.Context, client *kafkago.Client, topic string) error {
	resp, err := client.IncrementalAlterConfigs(ctx, &kafkago.IncrementalAlterConfigsRequest{
		Resources: []kafkago.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic,
			Configs: []kafkago.IncrementalAlterConfigsRequestConfig{{
				Name: "cleanup.policy", Value: "compact", ConfigOperation: kafkago.ConfigOperationSet,
			}},
		}},
	})
	if err == nil {
		for _, r := range resp.Resources {
			err = errors.Join(err, r.Error)
		}
	}
	if err != nil {
		return fmt.Errorf("topic %s exists without cleanup.policy=compact and could not be altered: %w", topic, err)
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
