package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// ReadAll reads every partition of topic from its first offset up to the
// high watermark found when it starts, calling fn for each record in
// partition order (a nil value is a tombstone). Each partition is read from
// its leader, so it works on clusters of any size. It is how services
// restore state they keep in compacted topics. It returns the number of
// records read; a topic that does not exist has none.
func ReadAll(ctx context.Context, brokers []string, topic string, fn func(m Message) error) (int, error) {
	return ReadSince(ctx, brokers, topic, time.Time{}, fn)
}

// ReadSince is ReadAll starting, in each partition, at the first record
// written at or after since (the first record when since is zero).
func ReadSince(ctx context.Context, brokers []string, topic string, since time.Time, fn func(m Message) error) (int, error) {
	if len(brokers) == 0 {
		return 0, errors.New("read " + topic + ": no brokers")
	}
	var d kafkago.Dialer
	parts, err := d.LookupPartitions(ctx, "tcp", brokers[0], topic)
	if errors.Is(err, kafkago.UnknownTopicOrPartition) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: list partitions: %w", topic, err)
	}
	total := 0
	for _, p := range parts {
		n, err := readPartition(ctx, &d, brokers, p, since, fn)
		total += n
		if err != nil {
			return total, fmt.Errorf("read %s/%d: %w", topic, p.ID, err)
		}
	}
	return total, nil
}

func readPartition(ctx context.Context, d *kafkago.Dialer, brokers []string, p kafkago.Partition, since time.Time, fn func(m Message) error) (int, error) {
	// A partition of a topic Apache Kafka has just created (or whose
	// leader is moving) answers NOT_LEADER_OR_FOLLOWER or
	// LEADER_NOT_AVAILABLE for a moment; a restore waits for it rather than
	// failing the service. (The embedded broker's partitions have leaders
	// at once, which hid this.)
	backoff := 20 * time.Millisecond
	var first, last int64
	for attempt := 1; ; attempt++ {
		var err error
		first, last, err = partitionOffsets(ctx, d, p, since)
		if err == nil {
			break
		}
		if attempt >= topicAttempts || !leaderNotReady(err) || !waitBackoff(ctx, backoff) {
			return 0, err
		}
		backoff = min(2*backoff, time.Second)
		if fresh, lerr := d.LookupPartitions(ctx, "tcp", brokers[0], p.Topic); lerr == nil {
			for _, fp := range fresh {
				if fp.ID == p.ID {
					p = fp
				}
			}
		}
	}
	if first < 0 || last <= first {
		return 0, nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:   brokers,
		Topic:     p.Topic,
		Partition: p.ID,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   100 * time.Millisecond,
	})
	defer func() { _ = r.Close() }()
	if err := r.SetOffset(first); err != nil {
		return 0, fmt.Errorf("seek to %d: %w", first, err)
	}
	n := 0
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return n, fmt.Errorf("read at offset %d of %d: %w", r.Offset(), last, err)
		}
		if err := fn(m); err != nil {
			return n, err
		}
		n++
		if m.Offset >= last-1 {
			return n, nil
		}
	}
}

// partitionOffsets returns the first offset to read of p (the first, or the
// first at or after since) and its high watermark, asked of its leader.
func partitionOffsets(ctx context.Context, d *kafkago.Dialer, p kafkago.Partition, since time.Time) (first, last int64, err error) {
	leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
	lc, err := d.DialLeader(ctx, "tcp", leader, p.Topic, p.ID)
	if err != nil {
		return 0, 0, fmt.Errorf("dial leader %s: %w", leader, err)
	}
	defer func() { _ = lc.Close() }()
	first, last, err = lc.ReadOffsets()
	if err == nil && !since.IsZero() {
		first, err = lc.ReadOffset(since)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read offsets: %w", err)
	}
	return first, last, nil
}

// leaderNotReady reports whether err says a partition has no (known)
// leader yet, which passes by itself.
func leaderNotReady(err error) bool {
	return errors.Is(err, kafkago.NotLeaderForPartition) || errors.Is(err, kafkago.LeaderNotAvailable) ||
		errors.Is(err, kafkago.UnknownTopicOrPartition)
}
