package kafka

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tributary-ml/tributary/libs/testutil"
)

// keyedCluster is a three-broker embedded cluster, so partitions have
// different leaders and a request sent to the wrong broker fails.
func keyedCluster(t *testing.T) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(6))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// keyedBrokers is the real Kafka cluster when the tests run on one
// (testutil.KafkaEnv), else keyedCluster's brokers.
func keyedBrokers(t *testing.T) []string {
	t.Helper()
	if len(testutil.RealKafka()) > 0 {
		return []string{testutil.Kafka(t, 6)}
	}
	_, brokers := keyedCluster(t)
	return brokers
}

// readTopic returns every record of topic by partition, in order.
func readTopic(t *testing.T, ctx context.Context, brokers []string, topic string) map[int][]kafkago.Message {
	t.Helper()
	got := map[int][]kafkago.Message{}
	if _, err := ReadAll(ctx, brokers, topic, func(m kafkago.Message) error {
		got[m.Partition] = append(got[m.Partition], m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestKeyedWriterPlacesLikeProducer: a write bigger than one request per
// partition, with tombstones, lands on the partitions (led by different
// brokers) where Producer puts the same keys, in order, with trace
// headers.
func TestKeyedWriterPlacesLikeProducer(t *testing.T) {
	brokers := keyedBrokers(t)
	ctx := testutil.Context(t, time.Minute)
	if err := EnsureTopics(ctx, brokers, TopicSpec{Name: "keyed", Partitions: 6}, TopicSpec{Name: "viaproducer", Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	value := bytes.Repeat([]byte("v"), 1000) // 5 MB: several requests per partition
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Key: []byte(fmt.Sprint("key-", i)), Value: append([]byte(fmt.Sprint(i, ":")), value...)}
		if i%10 == 9 {
			msgs[i].Value = nil
		}
	}
	w, err := NewKeyedWriter(ctx, brokers, "keyed")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(ProducerConfig{Brokers: brokers, Topic: "viaproducer"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	plain := make([]Message, n)
	for i := range plain {
		plain[i] = Message{Key: msgs[i].Key, Value: []byte("x")}
	}
	if err := p.Write(ctx, plain...); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for part, ms := range readTopic(t, ctx, brokers, "viaproducer") {
		for _, m := range ms {
			want[string(m.Key)] = part
		}
	}
	got := readTopic(t, ctx, brokers, "keyed")
	seen := 0
	for part, ms := range got {
		last := -1
		for _, m := range ms {
			seen++
			var i int
			if _, err := fmt.Sscanf(string(m.Key), "key-%d", &i); err != nil {
				t.Fatal(err)
			}
			if want[string(m.Key)] != part {
				t.Fatalf("%s on partition %d, Producer put it on %d", m.Key, part, want[string(m.Key)])
			}
			if i <= last {
				t.Fatalf("partition %d: %s after key-%d", part, m.Key, last)
			}
			last = i
			if (m.Value == nil) != (msgs[i].Value == nil) || (m.Value != nil && !bytes.Equal(m.Value, msgs[i].Value)) {
				t.Fatalf("%s: value of %d bytes, want %d (nil %v)", m.Key, len(m.Value), len(msgs[i].Value), msgs[i].Value == nil)
			}
			if !hasHeader(m.Headers, traceparent) {
				t.Fatalf("%s has no trace context", m.Key)
			}
		}
	}
	if seen != n || len(got) != 6 {
		t.Fatalf("%d records on %d partitions, want %d on 6", seen, len(got), n)
	}
}

// TestKeyedWriterRetriesALeaderChange: the first produce request is
// answered NOT_LEADER_FOR_PARTITION; the write still succeeds, every
// record written once. It needs the embedded cluster's request hooks, so
// it runs there even in the real-server tier.
func TestKeyedWriterRetriesALeaderChange(t *testing.T) {
	c, brokers := keyedCluster(t)
	ctx := testutil.Context(t, time.Minute)
	if err := EnsureTopics(ctx, brokers, TopicSpec{Name: "retry", Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refused.Load() > 0 {
			return nil, nil, false
		}
		refused.Add(1)
		pr := req.(*kmsg.ProduceRequest)
		return testutil.ProduceErrorResponse(pr, 6 /* NOT_LEADER_FOR_PARTITION */), nil, true
	})
	w, err := NewKeyedWriter(ctx, brokers, "retry")
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]Message, 300)
	for i := range msgs {
		msgs[i] = Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if refused.Load() != 1 {
		t.Fatalf("%d requests refused, want 1", refused.Load())
	}
	n := 0
	for _, ms := range readTopic(t, ctx, brokers, "retry") {
		n += len(ms)
	}
	if n != len(msgs) {
		t.Fatalf("%d records on the topic, want %d", n, len(msgs))
	}
}

func TestKeyedWriterRefusesARecordWithoutKey(t *testing.T) {
	brokers := keyedBrokers(t)
	ctx := testutil.Context(t, time.Minute)
	if err := EnsureTopics(ctx, brokers, TopicSpec{Name: "nokey", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	w, err := NewKeyedWriter(ctx, brokers, "nokey")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, Message{Key: []byte("a")}, Message{Value: []byte("v")}); err == nil {
		t.Fatal("a record without a key was accepted")
	}
}
