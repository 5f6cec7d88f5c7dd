package offline

import (
	"context"
	"fmt"
	"time"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

// Completeness says up to when the archive holds every record of some
// topics, by comparing it with Kafka.
type Completeness struct {
	// Through is the instant up to which (inclusive) every record of the
	// topics that arrived by then is archived.
	Through time.Time
	// Bound names the partition that sets Through ("" when every
	// partition is archived to its end).
	Bound string
}

// ArchivedThrough compares the archive with Kafka: a partition archived
// to its end offset is complete through now; one that is not is complete
// until just before the first record it lacks arrived.
func ArchivedThrough(ctx context.Context, arc *archive.Archive, brokers []string, topics []string, now time.Time) (Completeness, error) {
	c := Completeness{Through: now}
	for _, topic := range topics {
		parts, err := kafka.Partitions(ctx, brokers, topic)
		if err != nil {
			return c, err
		}
		files, err := arc.Files(ctx, topic)
		if err != nil {
			return c, err
		}
		next := map[int]int64{}
		for _, f := range files {
			if f.Partition >= 0 {
				next[int(f.Partition)] = max(next[int(f.Partition)], f.Last+1)
			}
		}
		for _, p := range parts {
			_, end, err := kafka.PartitionOffsets(ctx, brokers, topic, p)
			if err != nil {
				return c, err
			}
			if next[p] >= end {
				continue
			}
			at, err := recordTime(ctx, brokers, topic, p, next[p])
			if err != nil {
				return c, err
			}
			if t := at.Add(-time.Millisecond); t.Before(c.Through) {
				c.Through = t
				c.Bound = fmt.Sprintf("%s/%d (archived up to offset %d of %d)", topic, p, next[p], end)
			}
		}
	}
	return c, nil
}

// recordTime is the Kafka record time of the record at offset.
func recordTime(ctx context.Context, brokers []string, topic string, partition int, offset int64) (time.Time, error) {
	r, err := kafka.NewPartitionReader(brokers, topic, partition, offset)
	if err != nil {
		return time.Time{}, err
	}
	defer func() { _ = r.Close() }()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := r.Fetch(fctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s/%d at %d: %w", topic, partition, offset, err)
	}
	return m.Time, nil
}
