package offline_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

type expectedRecord struct {
	Partition int     `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       string  `json:"key"`
	Value     *string `json:"value"`
	EventMs   *int64  `json:"event_ms"`
}

// TestArchiveReadableByDuckDBAndPyarrow archives produced records through
// the service and reads the files with DuckDB and pyarrow (Python, from
// TRIBUTARY_TEST_PYTHON): row counts and values must be what was produced.
func TestArchiveReadableByDuckDBAndPyarrow(t *testing.T) {
	py := testutil.Python(t)
	ctx := testutil.Context(t, 3*time.Minute)
	brokers := testutil.Kafka(t, 3)
	root := filepath.Join(t.TempDir(), "offline")
	url := "file://" + root
	c := testConfig(brokers, url)
	c.RollBytes = 4 << 10 // several files per partition
	svc, err := offline.New(ctx, c, offline.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.RunService(t, "offline", svc)

	const n = 300
	var msgs []kafka.Message
	for i := range n {
		click := fmt.Appendf(nil, `{"user_id":"u%d","page":"/p%d","ts_ms":%d}`, i%7, i, 1796119200000+int64(i)*1000)
		pred := fmt.Appendf(nil, `{"id":"p%d","model":"fraud","score":0.%d}`, i, i)
		if i%50 == 49 {
			pred = nil // a tombstone
		}
		msgs = append(msgs,
			kafka.Message{Topic: "events.clicks", Key: fmt.Appendf(nil, "u%d", i%7), Value: click},
			kafka.Message{Topic: "predictions", Key: fmt.Appendf(nil, "p%d", i), Value: pred})
	}
	for _, topic := range []string{"events.clicks", "predictions"} {
		if err := kafka.EnsureTopics(ctx, []string{brokers}, kafka.TopicSpec{Name: topic, Partitions: 3}); err != nil {
			t.Fatal(err)
		}
		w, err := kafka.NewKeyedWriter(ctx, []string{brokers}, topic)
		if err != nil {
			t.Fatal(err)
		}
		var mine []kafka.Message
		for _, m := range msgs {
			if m.Topic == topic {
				m.Topic = ""
				mine = append(mine, m)
			}
		}
		if err := w.Write(ctx, mine...); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// What Kafka holds is what the archive must hold.
	want := map[string][]expectedRecord{}
	for _, topic := range []string{"events.clicks", "predictions"} {
		if _, err := kafka.ReadAll(ctx, []string{brokers}, topic, func(m kafka.Message) error {
			r := expectedRecord{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key)}
			if len(m.Value) > 0 {
				v := string(m.Value)
				r.Value = &v
			}
			if topic == "events.clicks" {
				var ev struct {
					TsMs int64 `json:"ts_ms"`
				}
				if err := json.Unmarshal(m.Value, &ev); err != nil {
					return err
				}
				r.EventMs = &ev.TsMs
			}
			want[topic] = append(want[topic], r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(want[topic]) != n {
			t.Fatalf("%s: Kafka holds %d records, %d were produced", topic, len(want[topic]), n)
		}
	}
	arc, err := archive.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	testutil.Eventually(t, 2*time.Minute, "every record archived", func() error {
		for topic := range want {
			k := 0
			if err := arc.Scan(ctx, topic, func(*archive.Row) error { k++; return nil }); err != nil {
				return err
			}
			if k != n {
				return fmt.Errorf("%s: %d of %d rows archived", topic, k, n)
			}
		}
		return nil
	})
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	exp := filepath.Join(t.TempDir(), "expected.json")
	if err := os.WriteFile(exp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, py, "testdata/read_archive.py", root, exp).CombinedOutput()
	t.Logf("read_archive.py:\n%s", out)
	if err != nil {
		t.Fatalf("read_archive.py: %v", err)
	}
	if got := strings.Count(string(out), "rows match"); got != 4 {
		t.Fatalf("%d of 4 reader/topic checks passed", got)
	}
}
