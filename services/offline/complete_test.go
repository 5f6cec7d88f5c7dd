package offline

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

func TestArchivedThroughComparesTheArchiveWithKafka(t *testing.T) {
	ctx := testutil.Context(t, 60*time.Second)
	brokers := []string{testutil.Kafka(t, 1)}
	const topic = "events.x"
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	w, err := kafka.NewKeyedWriter(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var msgs []kafka.Message
	for i := range 5 {
		msgs = append(msgs, kafka.Message{Key: []byte("k"), Value: fmt.Appendf(nil, "v%d", i), Time: t0.Add(time.Duration(i) * time.Second)})
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	arc, err := archive.Create(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	rows := func(from, to int64) []archive.Row {
		var rs []archive.Row
		for o := from; o <= to; o++ {
			rs = append(rs, archive.Row{Topic: topic, Offset: o, Value: fmt.Appendf(nil, "v%d", o), ArrivalMs: t0.Add(time.Duration(o) * time.Second).UnixMilli()})
		}
		return rs
	}
	now := t0.Add(time.Hour)

	// Nothing archived: complete until the first record arrived.
	c, err := ArchivedThrough(ctx, arc, brokers, []string{topic}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(-time.Millisecond); !c.Through.Equal(want) || !strings.Contains(c.Bound, "events.x/0") {
		t.Errorf("empty archive: %+v, want through %s bound by events.x/0", c, want)
	}
	// Offsets 0-2 archived: complete until record 3 arrived.
	if _, err := arc.WriteFile(ctx, rows(0, 2)); err != nil {
		t.Fatal(err)
	}
	if c, err = ArchivedThrough(ctx, arc, brokers, []string{topic}, now); err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(3*time.Second - time.Millisecond); !c.Through.Equal(want) || !strings.Contains(c.Bound, "offset 3 of 5") {
		t.Errorf("archived to offset 2: %+v, want through %s bound by offset 3 of 5", c, want)
	}
	// Everything archived: complete through now.
	if _, err := arc.WriteFile(ctx, rows(3, 4)); err != nil {
		t.Fatal(err)
	}
	if c, err = ArchivedThrough(ctx, arc, brokers, []string{topic}, now); err != nil {
		t.Fatal(err)
	}
	if !c.Through.Equal(now) || c.Bound != "" {
		t.Errorf("archived to the end: %+v, want through now, no bound", c)
	}
}
