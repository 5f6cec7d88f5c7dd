// Package kafkaio holds the featurizer's Kafka adapters: the source stage's
// consumer handler that routes source records onto the repartition topic,
// the aggregation stage that consumes its assigned repartition partitions
// (restoring their tiles from the compacted features.tiles on every
// assignment) and writes what the core flushes to features.tiles, and the
// reader of that topic.
package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/tiles"
	"github.com/tributary-ml/tributary/services/featurizer/internal/core"
)

// ReadAll reads every partition of topic from its first offset up to the
// high watermark found when it starts, calling fn for each record in
// partition order (a nil value is a tombstone); partitions are read one
// after another. It is how a starting
// featurizer restores the state it emitted before.
func ReadAll(ctx context.Context, brokers []string, topic string, fn func(m kafkago.Message) error) (int, error) {
	if len(brokers) == 0 {
		return 0, errors.New("read tiles: no brokers")
	}
	var d kafkago.Dialer
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return 0, fmt.Errorf("read %s: dial %s: %w", topic, brokers[0], err)
	}
	parts, err := conn.ReadPartitions(topic)
	_ = conn.Close()
	if err != nil {
		return 0, fmt.Errorf("read %s: list partitions: %w", topic, err)
	}
	total := 0
	for _, p := range parts {
		n, err := readPartition(ctx, &d, brokers, p, fn)
		total += n
		if err != nil {
			return total, fmt.Errorf("read %s/%d: %w", topic, p.ID, err)
		}
	}
	return total, nil
}

func readPartition(ctx context.Context, d *kafkago.Dialer, brokers []string, p kafkago.Partition, fn func(m kafkago.Message) error) (int, error) {
	leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
	lc, err := d.DialLeader(ctx, "tcp", leader, p.Topic, p.ID)
	if err != nil {
		return 0, fmt.Errorf("dial leader %s: %w", leader, err)
	}
	first, last, err := lc.ReadOffsets()
	_ = lc.Close()
	if err != nil {
		return 0, fmt.Errorf("read offsets: %w", err)
	}
	if last <= first {
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

// Restore loads into eng the tiles on topic (the compacted
// features.tiles) of the repartition partitions in parts, out of n: the
// last state of every key, minus the keys a tombstone deleted. A tile
// belongs to the partition core.PartitionOf its view and entity. Tiles
// that do not decode are logged and skipped.
func Restore(ctx context.Context, brokers []string, topic string, eng *core.Engine, parts map[int32]bool, n int, log *slog.Logger) (int, error) {
	kept := 0
	_, err := ReadAll(ctx, brokers, topic, func(m kafkago.Message) error {
		view, entity, _, _, ok := core.ParseKey(string(m.Key))
		if !ok {
			if log != nil {
				log.Warn("skip tile with a malformed key", "key", string(m.Key))
			}
			return nil
		}
		p := int32(core.PartitionOf(view, entity, n))
		if !parts[p] {
			return nil
		}
		kept++
		if m.Value == nil {
			eng.RestoreTombstone(p, string(m.Key))
			return nil
		}
		t, err := tiles.Decode(m.Value)
		if err != nil {
			if log != nil {
				log.Warn("skip undecodable tile", "key", string(m.Key), "err", err)
			}
			return nil
		}
		eng.Restore(p, t)
		return nil
	})
	return kept, err
}
