package offline

import (
	"context"
	"errors"
	"fmt"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/archiver"
)

// archiveFileRows is how many records WriteArchive puts in one file.
const archiveFileRows = 100_000

// WriteArchive writes Kafka records into the archive at url (a file://
// directory is created if it does not exist) as the archiver archives
// them: each record's Time is its arrival, and its archived columns are
// decoded with the plans of the views. Each partition's records must be in
// offset order. For simulated histories (the example model's training
// data) and tests.
func WriteArchive(ctx context.Context, url string, views []*featurespec.View, msgs []kafka.Message) error {
	type part struct {
		topic     string
		partition int
	}
	var order []part
	var topics []string
	byPart := map[part][]*kafka.Message{}
	for i := range msgs {
		p := part{msgs[i].Topic, msgs[i].Partition}
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
			topics = append(topics, p.topic)
		}
		byPart[p] = append(byPart[p], &msgs[i])
	}
	plans := archiver.Plans(views, topics)
	arc, err := archive.Create(ctx, url)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	write := func() error {
		for _, p := range order {
			ms := byPart[p]
			for start := 0; start < len(ms); start += archiveFileRows {
				chunk := ms[start:min(start+archiveFileRows, len(ms))]
				rows := make([]archive.Row, len(chunk))
				for i, m := range chunk {
					rows[i] = plans[p.topic].Row(m)
				}
				if _, err := arc.WriteFile(ctx, rows); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return errors.Join(write(), arc.Close())
}

// OpenArchiveHistory opens the archive at url as a training set's History
// (see ArchiveHistory); call close when done with it.
func OpenArchiveHistory(ctx context.Context, url string) (h History, close func() error, err error) {
	arc, err := archive.Open(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	return ArchiveHistory(arc), arc.Close, nil
}
