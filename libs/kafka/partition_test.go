package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
)

func TestPartitionReaderAndStandaloneCommits(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	brokers := []string{testutil.Kafka(t, 2)}
	if ps, err := Partitions(ctx, brokers, "nope"); err != nil || len(ps) != 0 {
		t.Fatalf("partitions of a missing topic: %v %v", ps, err)
	}
	if err := EnsureTopics(ctx, brokers, TopicSpec{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	w, err := NewKeyedWriter(ctx, brokers, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var msgs []Message
	for i := range 20 {
		msgs = append(msgs, Message{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint("v", i))})
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	ps, err := Partitions(ctx, brokers, "t")
	if err != nil || len(ps) != 2 {
		t.Fatalf("partitions: %v %v", ps, err)
	}
	first, next, err := PartitionOffsets(ctx, brokers, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Partition 0 from offset 2: the records from there on, in order.
	var all []Message
	if _, err := ReadAll(ctx, brokers, "t", func(m Message) error {
		if m.Partition == 0 {
			all = append(all, m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(all) < 3 {
		t.Fatalf("partition 0 has %d records; the test needs 3", len(all))
	}
	if first != 0 || next != int64(len(all)) {
		t.Fatalf("offsets of partition 0: first %d, next %d; want 0, %d", first, next, len(all))
	}
	nctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if _, _, err := PartitionOffsets(nctx, brokers, "t", 7); err == nil {
		t.Fatal("offsets of a partition that does not exist: no error")
	}
	cancel()
	r, err := NewPartitionReader(brokers, "t", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, want := range all[2:] {
		m, err := r.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Offset != want.Offset || string(m.Value) != string(want.Value) {
			t.Fatalf("fetched %d %q, want %d %q", m.Offset, m.Value, want.Offset, want.Value)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := r.Fetch(short); err == nil {
		t.Fatal("fetch past the end returned a record")
	}
	cancel()

	if err := CommitOffsets(ctx, brokers, "g", map[string]map[int]int64{"t": {0: 3, 1: 7}}); err != nil {
		t.Fatal(err)
	}
	got, err := CommittedOffsets(ctx, brokers, "g", "t", []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 3 || got[1] != 7 {
		t.Fatalf("committed offsets %v, want 0:3 1:7", got)
	}
	none, err := CommittedOffsets(ctx, brokers, "other", "t", []int{0, 1})
	if err != nil || len(none) != 0 {
		t.Fatalf("a group without commits: %v %v", none, err)
	}
}
