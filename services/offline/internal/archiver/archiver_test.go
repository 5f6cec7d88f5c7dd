package archiver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/archiver"
)

// childEnv makes the re-executed test binary run an archiver:
// "<broker>|<archive url>|<topic>".
const childEnv = "TRIBUTARY_TEST_ARCHIVER_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	testutil.VerifyNoLeaks(m)
}

func runChild(spec string) int {
	f := strings.Split(spec, "|")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	arc, err := archive.Create(ctx, f[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err := archiver.New(archiver.Config{
		Brokers: []string{f[0]}, Topics: []string{f[2]},
		RollBytes: 4 << 10, RollInterval: 50 * time.Millisecond, Discover: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, arc)
	if err == nil {
		err = a.Run(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type produced struct {
	part   int
	offset int64
	value  []byte
}

// produce writes n records to topic and returns where each landed.
func produce(t *testing.T, ctx context.Context, w *kafka.KeyedWriter, topic string, from, n int) {
	t.Helper()
	var msgs []kafka.Message
	for i := from; i < from+n; i++ {
		v := []byte(fmt.Sprintf(`{"user_id":"u%d","amount":%d,"ts":%d}`, i%13, i, 1700000000000+i))
		if i%17 == 0 {
			v = nil // tombstones are archived too
		}
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(fmt.Sprintf("u%d", i%13)), Value: v})
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// kafkaRecords reads every record of topic back from Kafka.
func kafkaRecords(t *testing.T, ctx context.Context, brokers []string, topic string) map[[2]int64][]byte {
	t.Helper()
	out := map[[2]int64][]byte{}
	if _, err := kafka.ReadAll(ctx, brokers, topic, func(m kafka.Message) error {
		out[[2]int64{int64(m.Partition), m.Offset}] = m.Value
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// exactlyOnce checks that the archive's files cover every record of want
// once: no two files overlap, no offset is missing, values are equal.
func exactlyOnce(ctx context.Context, arc *archive.Archive, topic string, want map[[2]int64][]byte) error {
	files, err := arc.Files(ctx, topic)
	if err != nil {
		return err
	}
	seen := map[[2]int64]int{}
	for _, f := range files {
		err := arc.ReadFile(ctx, f, func(r *archive.Row) error {
			k := [2]int64{int64(r.Partition), r.Offset}
			seen[k]++
			w, ok := want[k]
			switch {
			case !ok:
				return fmt.Errorf("%s holds %d/%d, which Kafka does not", f.Key, r.Partition, r.Offset)
			case seen[k] > 1:
				return fmt.Errorf("%d/%d is archived twice (again in %s)", r.Partition, r.Offset, f.Key)
			case !bytes.Equal(w, r.Value):
				// (kafka-go reads a tombstone as an empty value; the
				// archive holds null for both)
				return fmt.Errorf("%d/%d: archived value %q, Kafka holds %q", r.Partition, r.Offset, r.Value, w)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	var missing []string
	for k := range want {
		if seen[k] == 0 {
			missing = append(missing, fmt.Sprintf("%d/%d", k[0], k[1]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d records not archived, e.g. %s", len(missing), missing[0])
	}
	return nil
}

// TestCrashExactlyOnce SIGKILLs an archiver (a child process) at random
// moments while records are produced and restarts it; the archive then
// holds every record exactly once.
func TestCrashExactlyOnce(t *testing.T) {
	ctx := testutil.Context(t, 4*time.Minute)
	broker := testutil.Kafka(t, 3)
	brokers := []string{broker}
	const topic = "events.crash"
	if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: topic, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	url := "file://" + dir
	w, err := kafka.NewKeyedWriter(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+broker+"|"+url+"|"+topic)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd
	}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	n := 0
	kills := 0
	for round := range 12 {
		cmd := start()
		// Records arrive while the archiver runs; it is killed at a random
		// moment: while fetching, writing a file or committing.
		for range 1 + rng.IntN(4) {
			k := 20 + rng.IntN(200)
			produce(t, ctx, w, topic, n, k)
			n += k
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // the kill point, not synchronisation
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		_ = round
	}
	want := kafkaRecords(t, ctx, brokers, topic)
	if len(want) != n {
		t.Fatalf("Kafka holds %d records, %d were produced", len(want), n)
	}
	arc, err := archive.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	// A last run catches up; then the archive must hold everything once.
	cmd := start()
	testutil.Eventually(t, time.Minute, "the archive to hold every record once", func() error {
		return exactlyOnce(ctx, arc, topic, want)
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := exactlyOnce(ctx, arc, topic, want); err != nil {
		t.Fatal(err)
	}
	files, _ := arc.Files(ctx, topic)
	t.Logf("%d records, %d kills, %d files", n, kills, len(files))
}

func TestArchiveDecodesSources(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	brokers := []string{testutil.Kafka(t, 1)}
	views := []*featurespec.View{
		{Name: "v_clicks", Source: featurespec.Source{Topic: "events.clicks", Format: featurespec.FormatJSON, EventTime: "ts_ms"}},
		{Name: "v_txn", Source: featurespec.Source{Topic: "cdc.public.transactions", Format: featurespec.FormatDebezium, EventTime: "created_at"}},
		{Name: "v_plain", Source: featurespec.Source{Topic: "events.plain", Format: featurespec.FormatJSON}},
	}
	topics := []string{"events.clicks", "cdc.public.transactions", "events.plain", "predictions"}
	for _, tpc := range topics {
		if err := kafka.EnsureTopics(ctx, brokers, kafka.TopicSpec{Name: tpc, Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msgs := []kafka.Message{
		{Topic: "events.clicks", Key: []byte("u1"), Value: []byte(`{"user_id":"u1","ts_ms":1796119200250}`)},
		{Topic: "events.clicks", Key: []byte("u1"), Value: []byte(`{"user_id":"u1","ts_ms":"not a time"}`)},
		{Topic: "cdc.public.transactions", Key: []byte(`{"id":1}`), Value: []byte(`{"before":null,"after":{"id":1,"created_at":"2026-12-01T10:00:00Z"},"op":"c","source":{"lsn":42},"ts_ms":5}`)},
		{Topic: "cdc.public.transactions", Key: []byte(`{"id":1}`), Value: []byte(`{"before":{"id":1,"created_at":"2026-12-01T10:00:01Z"},"after":null,"op":"d","source":{"lsn":43},"ts_ms":6}`)},
		{Topic: "cdc.public.transactions", Key: []byte(`{"id":1}`)},
		{Topic: "events.plain", Key: []byte("k"), Value: []byte(`{}`)},
		{Topic: "predictions", Key: []byte("p1"), Value: []byte(`{"id":"p1"}`)},
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	arc, err := archive.Create(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	a, err := archiver.New(archiver.Config{Brokers: brokers, Topics: topics, Views: views, RollInterval: time.Hour, Discover: 50 * time.Millisecond}, arc)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	testutil.Eventually(t, 30*time.Second, "every record read", func() error {
		if st := a.Stats(); st.Pending != int64(len(msgs)) || st.Rows != 0 {
			return fmt.Errorf("%d records buffered, %d written; want %d buffered", st.Pending, st.Rows, len(msgs))
		}
		return nil
	})
	// The roll interval is an hour: stopping writes what is buffered.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Rows != int64(len(msgs)) || st.Files != 4 {
		t.Fatalf("stats %+v, want %d rows in 4 files", st, len(msgs))
	}
	got := map[string][]archive.Row{}
	for _, tpc := range topics {
		if err := arc.Scan(ctx, tpc, func(r *archive.Row) error {
			got[tpc] = append(got[tpc], *r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, ok bool, r archive.Row) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %+v", what, r)
		}
	}
	c := got["events.clicks"]
	check("click event time", c[0].EventMs == 1796119200250, c[0])
	check("undecodable event time is unknown", c[1].EventMs == 0 && string(c[1].Value) == string(msgs[1].Value), c[1])
	x := got["cdc.public.transactions"]
	check("cdc create", x[0].Op == "c" && x[0].LSN == 42 && x[0].Before == "" && x[0].After == `{"id":1,"created_at":"2026-12-01T10:00:00Z"}` && x[0].EventMs == 1796119200000, x[0])
	check("cdc delete: time of the before image", x[1].Op == "d" && x[1].After == "" && x[1].EventMs == 1796119201000, x[1])
	check("tombstone", x[2].Value == nil && x[2].Op == "" && x[2].EventMs == 0, x[2])
	pl := got["events.plain"][0]
	check("no event_time field: record time", pl.EventMs == pl.ArrivalMs && pl.ArrivalMs > 0, pl)
	pr := got["predictions"][0]
	check("not a view source: no event time", pr.EventMs == 0 && pr.Offset == 0 && pr.Partition == 0 && string(pr.Key) == "p1", pr)
}
