// Package state keeps ingest's per-slot progress marker in a compacted Kafka
// topic, next to the data it describes (as Debezium keeps its offsets in
// Kafka): whether the initial snapshot of a slot completed. When the topics
// are lost (a throw-away development broker), the marker goes with them and
// the next start snapshots again, which is what a consumer then needs.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/kafka"
)

// Phases of a slot.
const (
	// PhaseSnapshotting is written before the slot is created; finding it on
	// start means a snapshot was interrupted.
	PhaseSnapshotting = "snapshotting"
	// PhaseStreaming is written once every snapshot row was acknowledged.
	PhaseStreaming = "streaming"
)

// Record is the marker of one slot.
type Record struct {
	Slot            string   `json:"slot"`
	Phase           string   `json:"phase"`
	ConsistentPoint uint64   `json:"consistent_point,omitempty"`
	Tables          []string `json:"tables,omitempty"`
	SnapshotRows    int      `json:"snapshot_rows,omitempty"`
	TsMs            int64    `json:"ts_ms"`
}

// Store reads and writes markers on a single-partition topic.
type Store struct {
	Brokers  []string
	Topic    string
	Producer interface {
		Write(ctx context.Context, msgs ...kafka.Message) error
	}
}

// Ensure creates the topic when missing.
func (s *Store) Ensure(ctx context.Context) error {
	return kafka.EnsureTopics(ctx, s.Brokers, kafka.TopicSpec{Name: s.Topic, Partitions: 1, Compacted: true})
}

// Load returns the latest marker of slot, or false when there is none.
func (s *Store) Load(ctx context.Context, slot string) (Record, bool, error) {
	if len(s.Brokers) == 0 {
		return Record{}, false, errors.New("state: no brokers")
	}
	conn, err := kafkago.DialLeader(ctx, "tcp", s.Brokers[0], s.Topic, 0)
	if err != nil {
		return Record{}, false, fmt.Errorf("state: dial %s: %w", s.Topic, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return Record{}, false, fmt.Errorf("state: offsets of %s: %w", s.Topic, err)
	}
	var (
		found bool
		rec   Record
	)
	for off := first; off < last; {
		if _, err := conn.Seek(off, kafkago.SeekAbsolute); err != nil {
			return Record{}, false, fmt.Errorf("state: seek %s to %d: %w", s.Topic, off, err)
		}
		batch := conn.ReadBatch(1, 10<<20)
		progressed := false
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			progressed = true
			off = m.Offset + 1
			if string(m.Key) != slot {
				continue
			}
			if m.Value == nil {
				found = false
				continue
			}
			var r Record
			if err := json.Unmarshal(m.Value, &r); err != nil {
				return Record{}, false, fmt.Errorf("state: record at %s offset %d: %w", s.Topic, m.Offset, err)
			}
			rec, found = r, true
		}
		if err := batch.Close(); err != nil && !progressed {
			return Record{}, false, fmt.Errorf("state: read %s at %d: %w", s.Topic, off, err)
		}
		if !progressed {
			break
		}
	}
	return rec, found, nil
}

// Save writes r and returns once Kafka acknowledged it.
func (s *Store) Save(ctx context.Context, r Record) error {
	now := time.Now()
	r.TsMs = now.UnixMilli()
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.Producer.Write(ctx, kafka.Message{Topic: s.Topic, Key: []byte(r.Slot), Value: v, Time: now}); err != nil {
		return fmt.Errorf("state: save %s: %w", r.Slot, err)
	}
	return nil
}
