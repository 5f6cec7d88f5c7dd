package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Partitions lists the partition ids of topic; a topic that does not exist
// (yet) has none. Unlike a lookup by name, it never makes a broker
// auto-create the topic: it asks for the metadata of all topics.
func Partitions(ctx context.Context, brokers []string, topic string) ([]int, error) {
	if len(brokers) == 0 {
		return nil, errors.New("partitions of " + topic + ": no brokers")
	}
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: dial %s: %w", topic, brokers[0], err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	parts, err := conn.ReadPartitions()
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	var ids []int
	for _, p := range parts {
		if p.Topic == topic {
			ids = append(ids, p.ID)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// PartitionReader reads one partition from an offset the caller chose, for
// consumers that keep their position themselves (the offline archive
// resumes from the offset ranges of the files it wrote) instead of in a
// consumer group.
type PartitionReader struct {
	r *kafkago.Reader
}

// NewPartitionReader reads topic's partition from offset on.
func NewPartitionReader(brokers []string, topic string, partition int, offset int64) (*PartitionReader, error) {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        brokers,
		Topic:          topic,
		Partition:      partition,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        250 * time.Millisecond,
		ReadBackoffMin: 10 * time.Millisecond,
		ReadBackoffMax: 500 * time.Millisecond,
	})
	if err := r.SetOffset(offset); err != nil {
		return nil, errors.Join(fmt.Errorf("seek %s/%d to %d: %w", topic, partition, offset, err), r.Close())
	}
	return &PartitionReader{r: r}, nil
}

// Fetch returns the next record; it waits until one arrives or ctx ends.
// After a ctx error the reader can be used again.
func (p *PartitionReader) Fetch(ctx context.Context) (Message, error) {
	return p.r.FetchMessage(ctx)
}

// Lag is how many records the partition's high watermark is ahead of the
// last record fetched (as of the last fetch).
func (p *PartitionReader) Lag() int64 { return p.r.Stats().Lag }

// Close stops the reader.
func (p *PartitionReader) Close() error { return p.r.Close() }

// CommitOffsets stores next offsets (the offset of the first record not yet
// processed) per topic and partition for group, as a consumer outside
// group membership does (generation -1): tools that show a group's lag
// show it, and a consumer that keeps its own position can fall back on it.
func CommitOffsets(ctx context.Context, brokers []string, group string, next map[string]map[int]int64) error {
	req := &kafkago.OffsetCommitRequest{Addr: kafkago.TCP(brokers...), GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{}}
	for t, ps := range next {
		for p, o := range ps {
			req.Topics[t] = append(req.Topics[t], kafkago.OffsetCommit{Partition: p, Offset: o})
		}
	}
	client := &kafkago.Client{Addr: req.Addr, Timeout: 10 * time.Second}
	resp, err := client.OffsetCommit(ctx, req)
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	var errs []error
	for t, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				errs = append(errs, fmt.Errorf("commit offset of group %s on %s/%d: %w", group, t, p.Partition, p.Error))
			}
		}
	}
	return errors.Join(errs...)
}

// CommittedOffsets returns group's committed next offsets of topic's
// partitions; partitions without a commit are left out.
func CommittedOffsets(ctx context.Context, brokers []string, group, topic string, partitions []int) (map[int]int64, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err == nil {
		err = resp.Error
	}
	if errors.Is(err, kafkago.GroupIdNotFound) {
		return map[int]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// PartitionOffsets returns a partition's first offset (the log start) and
// its high watermark (the offset the next record gets), from its leader.
func PartitionOffsets(ctx context.Context, brokers []string, topic string, partition int) (first, next int64, err error) {
	if len(brokers) == 0 {
		return 0, 0, errors.New("offsets of " + topic + ": no brokers")
	}
	var d kafkago.Dialer
	lc, err := d.DialLeader(ctx, "tcp", brokers[0], topic, partition)
	if err != nil {
		return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, partition, err)
	}
	defer lc.Close()
	first, next, err = lc.ReadOffsets()
	if err != nil {
		return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, partition, err)
	}
	return first, next, nil
}
