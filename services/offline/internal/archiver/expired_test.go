package archiver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/archiver"
)

// TestRecordsExpiredBeforeArchiving: records Kafka deleted before the
// archiver read them are counted as lost, and archiving continues at the
// log start instead of waiting forever for offsets that are gone.
func TestRecordsExpiredBeforeArchiving(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	broker := testutil.Kafka(t, 1)
	const topic = "events.expiring"
	if err := kafka.EnsureTopics(ctx, []string{broker}, kafka.TopicSpec{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 10 {
		if err := p.Write(ctx, kafka.Message{Key: []byte("k"), Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Retention, as Kafka applies it: the log now starts at offset 6.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 6
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("delete records: error code %d", code)
	}

	arc, err := archive.Create(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	a, err := archiver.New(archiver.Config{Brokers: []string{broker}, Topics: []string{topic}, RollInterval: 50 * time.Millisecond, Discover: 50 * time.Millisecond}, arc)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	testutil.Eventually(t, 30*time.Second, "offsets 6-9 archived", func() error {
		if st := a.Stats(); st.Rows != 4 {
			return fmt.Errorf("%d rows archived", st.Rows)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Lost != 6 {
		t.Fatalf("lost %d records, want 6", st.Lost)
	}
	var offsets []int64
	if err := arc.Scan(ctx, topic, func(r *archive.Row) error {
		offsets = append(offsets, r.Offset)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(offsets) != "[6 7 8 9]" {
		t.Fatalf("archived offsets %v, want [6 7 8 9]", offsets)
	}
}
