// Package kafkaio holds the featurizer's Kafka adapters: the source stage's
// consumer handler that routes source records onto the repartition topic,
// the aggregation stage that consumes its assigned repartition partitions
// (restoring their tiles from the compacted features.tiles on every
// assignment) and writes what the core flushes to features.tiles, and the
// reader of that topic.
package kafkaio

import (
	"context"
	"log/slog"

	"github.com/tributary-ml/tributary/libs/aggregate"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// Restore loads into eng the tiles on topic (the compacted
// features.tiles) of the repartition partitions in parts, out of n: the
// last state of every key, minus the keys a tombstone deleted. A tile
// belongs to the partition aggregate.PartitionOf its view and entity. Tiles
// that do not decode are logged and skipped.
func Restore(ctx context.Context, brokers []string, topic string, eng *aggregate.Engine, parts map[int32]bool, n int, log *slog.Logger) (int, error) {
	kept := 0
	_, err := kafka.ReadAll(ctx, brokers, topic, func(m kafka.Message) error {
		view, entity, _, _, ok := aggregate.ParseKey(string(m.Key))
		if !ok {
			if log != nil {
				log.Warn("skip tile with a malformed key", "key", string(m.Key))
			}
			return nil
		}
		p := int32(aggregate.PartitionOf(view, entity, n))
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
