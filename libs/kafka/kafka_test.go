package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-ml/tributary/libs/testutil"
)

type recorder struct {
	mu      sync.Mutex
	handled []Message
	flushed int
	traces  []trace.SpanContext
	failOn  string
}

func (r *recorder) Handle(ctx context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if string(m.Key) == r.failOn {
		return errors.New("boom")
	}
	r.handled = append(r.handled, m)
	r.traces = append(r.traces, trace.SpanContextFromContext(ctx))
	return nil
}

func (r *recorder) Flush(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushed = len(r.handled)
	return nil
}

func TestProduceConsumeCommitAndTrace(t *testing.T) {
	addr := testutil.Kafka(t, 2)
	ctx := testutil.Context(t, 60*time.Second)
	p, err := NewProducer(ProducerConfig{Brokers: []string{addr}, Topic: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled,
	})
	tctx := trace.ContextWithSpanContext(ctx, sc)
	var msgs []Message
	for _, k := range []string{"a", "b", "c", "d"} {
		msgs = append(msgs, Message{Key: []byte(k), Value: []byte("v" + k)})
	}
	if err := p.Write(tctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// First consumer fails on "c": nothing after the failure is committed.
	run := func(r *recorder, enough func(*recorder) bool) error {
		c, err := NewConsumer(ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"t1"}})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx, r) }()
		var runErr error
		testutil.Eventually(t, 30*time.Second, "records handled", func() error {
			select {
			case runErr = <-done:
				done <- runErr
				return nil
			default:
			}
			if !enough(r) {
				return errors.New("not yet")
			}
			return nil
		})
		cancel()
		return <-done
	}
	r1 := &recorder{failOn: "c"}
	if err := run(r1, func(*recorder) bool { return false }); err == nil {
		t.Fatal("consumer with failing handler returned nil")
	}
	// A second consumer in the same group gets at least "c" again.
	r2 := &recorder{}
	hasC := func(r *recorder) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, m := range r.handled {
			if string(m.Key) == "c" {
				return r.flushed == len(r.handled)
			}
		}
		return false
	}
	if err := run(r2, hasC); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i, m := range r2.handled {
		got[string(m.Key)] = true
		if r2.traces[i].TraceID() != sc.TraceID() {
			t.Errorf("message %s: trace id %s, want %s", m.Key, r2.traces[i].TraceID(), sc.TraceID())
		}
	}
	if !got["c"] {
		t.Fatalf("record c was not redelivered after the handler failed; second run handled %v", got)
	}
}

func TestWriteWithoutTraceStillCarriesTraceContext(t *testing.T) {
	addr := testutil.Kafka(t, 1)
	ctx := testutil.Context(t, 30*time.Second)
	p, err := NewProducer(ProducerConfig{Brokers: []string{addr}, Topic: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	own := Message{Key: []byte("own"), Headers: []Header{{Key: "traceparent", Value: []byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")}}}
	if err := p.Write(ctx, Message{Key: []byte("a")}, Message{Key: []byte("b")}, own); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	var traces []trace.SpanContext
	n, err := ReadAll(ctx, []string{addr}, "bare", func(m Message) error {
		sc := trace.SpanContextFromContext(ExtractTrace(ctx, &m))
		if !sc.IsValid() {
			t.Errorf("message %s has no trace context: headers %v", m.Key, m.Headers)
		}
		if string(m.Key) == "own" && sc.TraceID().String() != "0102030405060708090a0b0c0d0e0f10" {
			t.Errorf("the message's own trace context was replaced: %s", sc.TraceID())
		}
		if string(m.Key) != "own" {
			traces = append(traces, sc)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("ReadAll = %d, %v; want 3 records", n, err)
	}
	if len(traces) == 2 && traces[0].TraceID() != traces[1].TraceID() {
		t.Error("records of one batch should share a trace")
	}
}

func TestEnsureTopicsCompactsAnExistingTopic(t *testing.T) {
	addr := testutil.Kafka(t, 2)
	ctx := testutil.Context(t, 30*time.Second)
	// A name of its own on a real cluster: a topic of an earlier run that
	// Kafka is still deleting must not answer for this one.
	topic := "state"
	if len(testutil.RealKafka()) > 0 {
		topic = fmt.Sprintf("state-%d", time.Now().UnixNano())
	}
	if err := EnsureTopics(ctx, []string{addr}, TopicSpec{Name: topic}); err != nil {
		t.Fatal(err)
	}
	policy := func() string {
		c := &kafkago.Client{Addr: kafkago.TCP(addr)}
		resp, err := c.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
			ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"cleanup.policy"},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.Resources {
			for _, e := range r.ConfigEntries {
				if e.ConfigName == "cleanup.policy" {
					return e.ConfigValue
				}
			}
		}
		return ""
	}
	if got := policy(); got == "compact" {
		t.Fatalf("a topic created without Compacted is already compact")
	}
	if err := EnsureTopics(ctx, []string{addr}, TopicSpec{Name: topic, Compacted: true}); err != nil {
		t.Fatal(err)
	}
	if got := policy(); got != "compact" {
		t.Fatalf("cleanup.policy = %q after EnsureTopics with Compacted, want compact", got)
	}
}

func TestReadAllReadsEveryPartition(t *testing.T) {
	addr := testutil.Kafka(t, 3)
	ctx := testutil.Context(t, 30*time.Second)
	p, err := NewProducer(ProducerConfig{Brokers: []string{addr}, Topic: "all"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	var msgs []Message
	for i := range 50 {
		k := fmt.Sprintf("k%d", i)
		want[k] = true
		msgs = append(msgs, Message{Key: []byte(k), Value: []byte("v")})
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	got := map[string]bool{}
	if _, err := ReadAll(ctx, []string{addr}, "all", func(m Message) error { got[string(m.Key)] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d distinct keys, want %d", len(got), len(want))
	}
}

// TestIdleStreamIsFlushedWithoutWaitingForTheInterval: with an hour-long
// commit interval, records that stop arriving are flushed and committed
// once the stream is idle (IdleFlush), batch after batch: the first record
// after a commit must not wait for the interval.
func TestIdleStreamIsFlushedWithoutWaitingForTheInterval(t *testing.T) {
	addr := testutil.Kafka(t, 1)
	ctx := testutil.Context(t, 60*time.Second)
	p, err := NewProducer(ProducerConfig{Brokers: []string{addr}, Topic: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	// The topic exists before the group joins (see ConsumerConfig.Topics).
	if err := EnsureTopics(ctx, []string{addr}, TopicSpec{Name: "idle", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	c, err := NewConsumer(ConsumerConfig{Brokers: []string{addr}, GroupID: "g", Topics: []string{"idle"},
		CommitInterval: time.Hour, IdleFlush: 5 * time.Millisecond, IgnoreTrace: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx, r) }()
	for i, key := range []string{"a", "b", "c"} {
		if err := p.Write(ctx, Message{Key: []byte(key), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "record "+key+" flushed", func() error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.flushed < i+1 {
				return fmt.Errorf("%d records flushed, %d handled", r.flushed, len(r.handled))
			}
			return nil
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tc := range r.traces {
		if tc.IsValid() {
			t.Fatalf("IgnoreTrace: the handler got a record's trace %s", tc.TraceID())
		}
	}
}

// TestWriteWaitsForATopicBeingCreated: Apache Kafka answers the metadata
// request that auto-creates a topic with UNKNOWN_TOPIC_OR_PARTITION (or
// LEADER_NOT_AVAILABLE) until the topic exists; the first write to a new
// topic must wait for it, not fail. (Found on real Kafka: the embedded
// broker creates the topic before it answers.)
func TestWriteWaitsForATopicBeingCreated(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := testutil.Context(t, 30*time.Second)
	var refused atomic.Int64
	codes := []int16{3 /* UNKNOWN_TOPIC_OR_PARTITION */, 5 /* LEADER_NOT_AVAILABLE */}
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n := refused.Load()
		if n >= int64(len(codes)) {
			return nil, nil, false
		}
		refused.Add(1)
		mr := req.(*kmsg.MetadataRequest)
		resp := mr.ResponseKind().(*kmsg.MetadataResponse)
		for _, rt := range mr.Topics {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = codes[n]
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	p, err := NewProducer(ProducerConfig{Brokers: c.ListenAddrs(), Topic: "late"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if err := p.Write(ctx, Message{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if refused.Load() != int64(len(codes)) {
		t.Fatalf("%d metadata requests refused, want %d", refused.Load(), len(codes))
	}
	n := 0
	if _, err := ReadAll(ctx, c.ListenAddrs(), "late", func(kafkago.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d records on the topic, want 1", n)
	}
}

// TestEnsureTopicsWaitsForANewTopic: right after creating a topic, Apache
// Kafka may answer a request about it with UNKNOWN_TOPIC_OR_PARTITION
// (brokers learn of it a little later); making it compacted must wait for
// that, not fail. (Found on real Kafka; the embedded broker knows a topic
// as soon as it is created.)
func TestEnsureTopicsWaitsForANewTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := testutil.Context(t, 30*time.Second)
	var refused atomic.Int64
	c.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refused.Load() >= 2 {
			return nil, nil, false
		}
		refused.Add(1)
		dr := req.(*kmsg.DescribeConfigsRequest)
		resp := dr.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, r := range dr.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName, rr.ErrorCode = r.ResourceType, r.ResourceName, 3 /* UNKNOWN_TOPIC_OR_PARTITION */
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	if err := EnsureTopics(ctx, c.ListenAddrs(), TopicSpec{Name: "fresh", Partitions: 1, Compacted: true}); err != nil {
		t.Fatal(err)
	}
	if refused.Load() != 2 {
		t.Fatalf("%d describe requests refused, want 2", refused.Load())
	}
}

// TestReadAllWaitsForAPartitionLeader: the partitions of a topic Apache
// Kafka has just created answer NOT_LEADER_OR_FOLLOWER until their leader
// has loaded them; a restore (ReadAll) must wait, not fail the service.
// (Found on real Kafka: the featurizer stopped with "restore tiles: read
// offsets: Not Leader For Partition".)
func TestReadAllWaitsForAPartitionLeader(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := testutil.Context(t, 30*time.Second)
	p, err := NewProducer(ProducerConfig{Brokers: c.ListenAddrs(), Topic: "young"})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Message
	for i := range 20 {
		msgs = append(msgs, Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")})
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refused.Load() >= 3 {
			return nil, nil, false
		}
		refused.Add(1)
		lr := req.(*kmsg.ListOffsetsRequest)
		resp := lr.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range lr.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, 6 /* NOT_LEADER_OR_FOLLOWER */
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	n, err := ReadAll(ctx, c.ListenAddrs(), "young", func(Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n != len(msgs) || refused.Load() != 3 {
		t.Fatalf("read %d records with %d offset requests refused, want %d with 3", n, refused.Load(), len(msgs))
	}
}

// TestEnsureTopicsReturnsWhenTheTopicsAreListed: Apache Kafka answers
// CreateTopics before its brokers list the new topic; EnsureTopics must
// return only once they do, so the service's next request about the topic
// (its partition count) does not fail. (Found on real Kafka: the
// featurizer stopped with "partitions of featurizer.repartition: Unknown
// Topic Or Partition".)
func TestEnsureTopicsReturnsWhenTheTopicsAreListed(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := testutil.Context(t, 30*time.Second)
	var refused atomic.Int64
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mr := req.(*kmsg.MetadataRequest)
		if refused.Load() >= 2 || len(mr.Topics) != 1 || mr.Topics[0].Topic == nil || *mr.Topics[0].Topic != "listed" {
			return nil, nil, false
		}
		refused.Add(1)
		resp := mr.ResponseKind().(*kmsg.MetadataResponse)
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.ErrorCode = mr.Topics[0].Topic, 3 /* UNKNOWN_TOPIC_OR_PARTITION */
		resp.Topics = append(resp.Topics, st)
		return resp, nil, true
	})
	if err := EnsureTopics(ctx, c.ListenAddrs(), TopicSpec{Name: "listed", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if refused.Load() != 2 {
		t.Fatalf("EnsureTopics returned after %d metadata answers without the topic, want it to wait through 2", refused.Load())
	}
}
