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

// Spec is how the marker topic is created: one partition (markers of one
// slot stay in order), compacted (only a slot's latest marker matters).
func Spec(topic string) kafka.TopicSpec {
	return kafka.TopicSpec{Name: topic, Partitions: 1, Compacted: true}
}

// Ensure creates the topic when missing.
func (s *Store) Ensure(ctx context.Context) error {
	return kafka.EnsureTopics(ctx, s.Brokers, Spec(s.Topic))
}

// Load returns the latest marker of slot, or false when there is none.
func (s *Store) Load(ctx context.Context, slot string) (Record, bool, error) {
	if len(s.Brokers) == 0 {
		return Record{}, false, errors.New("state: no brokers")
	}
	var (
		found bool
		rec   Record
	)
	_, err := kafka.ReadAll(ctx, s.Brokers, s.Topic, func(m kafka.Message) error {
		if string(m.Key) != slot {
			return nil
		}
		if m.Value == nil {
			found = false
			return nil
		}
		var r Record
		if err := json.Unmarshal(m.Value, &r); err != nil {
			return fmt.Errorf("state: record at %s offset %d: %w", s.Topic, m.Offset, err)
		}
		rec, found = r, true
		return nil
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("state: %w", err)
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
