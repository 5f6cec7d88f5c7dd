package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest/internal/state"
)

func store(t *testing.T, broker, topic string) *state.Store {
	t.Helper()
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, BatchTimeout: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	s := &state.Store{Brokers: []string{broker}, Topic: topic, Producer: p}
	if err := s.Ensure(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatalf("ensure %s: %v", topic, err)
	}
	return s
}

func load(t *testing.T, s *state.Store, slot string) (state.Record, bool) {
	t.Helper()
	r, ok, err := s.Load(testutil.Context(t, 30*time.Second), slot)
	if err != nil {
		t.Fatalf("load %s: %v", slot, err)
	}
	return r, ok
}

// TestStoreLoadsTheLatestRecordOfASlot: an empty topic has no record; the
// latest record of each slot wins, other slots' records are ignored, a
// tombstone forgets the slot, and every field survives the round trip.
func TestStoreLoadsTheLatestRecordOfASlot(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	s := store(t, broker, "state.test")
	ctx := testutil.Context(t, time.Minute)
	if _, ok := load(t, s, "a"); ok {
		t.Fatal("record found on an empty topic")
	}
	before := time.Now().UnixMilli()
	for _, r := range []state.Record{
		{Slot: "a", Phase: state.PhaseSnapshotting},
		{Slot: "b", Phase: state.PhaseSnapshotting},
		{Slot: "a", Phase: state.PhaseStreaming, ConsistentPoint: 0x1A2B3C, Tables: []string{"public.users", "public.t"}, SnapshotRows: 42},
	} {
		if err := s.Save(ctx, r); err != nil {
			t.Fatalf("save %+v: %v", r, err)
		}
	}
	a, ok := load(t, s, "a")
	if !ok {
		t.Fatal("slot a: no record")
	}
	if a.Phase != state.PhaseStreaming || a.ConsistentPoint != 0x1A2B3C || a.SnapshotRows != 42 ||
		strings.Join(a.Tables, ",") != "public.users,public.t" || a.Slot != "a" {
		t.Errorf("slot a = %+v, want the streaming record", a)
	}
	if a.TsMs < before || a.TsMs > time.Now().UnixMilli() {
		t.Errorf("ts_ms %d not the time of saving", a.TsMs)
	}
	if b, ok := load(t, s, "b"); !ok || b.Phase != state.PhaseSnapshotting {
		t.Errorf("slot b = %+v, %v; want its own snapshotting record", b, ok)
	}
	if _, ok := load(t, s, "c"); ok {
		t.Error("record found for slot c, which was never saved")
	}

	// The records carry a timestamp (compaction and retention need one).
	conn, err := kafkago.DialLeader(ctx, "tcp", broker, "state.test", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	m, err := conn.ReadMessage(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if m.Time.UnixMilli() < before {
		t.Errorf("record timestamp %s, want the time of saving", m.Time)
	}

	// A tombstone (the slot's record deleted) forgets the slot.
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, BatchTimeout: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Write(ctx, kafka.Message{Topic: "state.test", Key: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	if r, ok := load(t, s, "a"); ok {
		t.Errorf("slot a after a tombstone = %+v, want no record", r)
	}
	if _, ok := load(t, s, "b"); !ok {
		t.Error("slot b lost by slot a's tombstone")
	}
}

// TestStoreReadsPastManyRecords: the latest record is found behind 12 MB of
// older ones, more than one fetch returns (Load reads 10 MB at a time).
func TestStoreReadsPastManyRecords(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	s := store(t, broker, "state.many")
	ctx := testutil.Context(t, time.Minute)
	const n = 300
	for i := 1; i <= n; i++ {
		if err := s.Save(ctx, state.Record{Slot: "s", Phase: state.PhaseStreaming, SnapshotRows: i, Tables: []string{strings.Repeat("x", 40000)}}); err != nil {
			t.Fatal(err)
		}
	}
	r, ok := load(t, s, "s")
	if !ok || r.SnapshotRows != n {
		t.Fatalf("loaded %+v, %v; want the record with snapshot_rows %d", r, ok, n)
	}
}

// TestStoreRejectsACorruptRecord: a record that is not JSON is an error that
// names the topic and offset, not a silent "no snapshot yet" (which would
// snapshot again).
func TestStoreRejectsACorruptRecord(t *testing.T) {
	broker := testutil.Kafka(t, 1)
	s := store(t, broker, "state.bad")
	ctx := testutil.Context(t, time.Minute)
	if err := s.Save(ctx, state.Record{Slot: "s", Phase: state.PhaseStreaming}); err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: []string{broker}, BatchTimeout: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Write(ctx, kafka.Message{Topic: "state.bad", Key: []byte("s"), Value: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Load(ctx, "s")
	var syntax *json.SyntaxError
	if err == nil || !strings.Contains(err.Error(), "state.bad offset 1") {
		t.Fatalf("Load = %v, want an error naming state.bad offset 1", err)
	}
	if !errors.As(err, &syntax) {
		t.Errorf("Load error %v does not wrap the JSON error", err)
	}
	// Other slots' corrupt records do not matter.
	if _, ok, err := s.Load(ctx, "other"); err != nil || ok {
		t.Errorf("Load(other) = %v, %v; want no record and no error", ok, err)
	}
}

// TestStoreErrors: no brokers, and an unreachable broker, are errors.
func TestStoreErrors(t *testing.T) {
	s := &state.Store{Topic: "state.x"}
	if _, _, err := s.Load(context.Background(), "s"); err == nil || !strings.Contains(err.Error(), "no brokers") {
		t.Errorf("Load without brokers = %v, want a no brokers error", err)
	}
	s.Brokers = []string{"127.0.0.1:1"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := s.Load(ctx, "s"); err == nil || !strings.Contains(err.Error(), "state.x") {
		t.Errorf("Load from an unreachable broker = %v, want an error naming the topic", err)
	}
}
