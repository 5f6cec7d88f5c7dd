package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tributary-ml/tributary/libs/cdc"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/ingest"
)

// benchRows is the burst size: 1M rows by default, TRIBUTARY_BENCH_ROWS to change.
func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("TRIBUTARY_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

func topicEnd(ctx context.Context, broker, topic string) (int64, error) {
	conn, err := kafkago.DialLeader(ctx, "tcp", broker, topic, 0)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadLastOffset()
}

// BenchmarkPostgresToKafka commits a burst of rows (shaped like the demo's
// transactions) while ingest is stopped, then measures how fast ingest drains
// them from its slot into Kafka (acknowledged records), and how fast
// pg_recvlogical drains the same WAL from a second pgoutput slot: the floor
// for reading the stream on this machine.
func BenchmarkPostgresToKafka(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchBurst(b, false)
	}
}

// BenchmarkPostgresToKafkaTraced is BenchmarkPostgresToKafka with spans
// exported (to a no-op exporter): one span per transaction of 10k rows.
func BenchmarkPostgresToKafkaTraced(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchBurst(b, true)
	}
}

func benchBurst(b *testing.B, traced bool) {
	b.StopTimer()
	e := newEnvTB(b)
	rows := benchRows()
	tbl := e.table("burst")
	e.exec(`CREATE TABLE ` + tbl + ` (txn_id bigint PRIMARY KEY, user_id text, merchant_id text, amount numeric(12,2), currency text, created_at timestamptz)`)
	cfg := e.config(tbl)
	if traced {
		cfg.Common.SpanExporter = tracetest.NewNoopExporter()
	}
	// Create slot and publication (no rows yet), then stop.
	r := start(b, cfg, ingest.Deps{})
	r.waitReady(b)
	r.stop(b)
	ctx := context.Background()
	recv := e.name + "_recv"
	if _, err := e.db.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, recv); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = e.db.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, recv) })
	for done := 0; done < rows; done += 10000 {
		n := min(10000, rows-done)
		e.exec(`INSERT INTO `+tbl+` SELECT g, 'user_' || (g % 1000), 'm_' || (g % 97), (g % 10000) / 100.0, 'USD', now()
			FROM generate_series($1::bigint, $2::bigint) g`, done+1, done+n)
	}
	var end string
	if err := e.db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end); err != nil {
		b.Fatal(err)
	}
	topic := cdc.Topic("public", tbl)

	b.StartTimer()
	began := time.Now()
	r = start(b, cfg, ingest.Deps{})
	testutil.Eventually(b, 10*time.Minute, fmt.Sprintf("%d rows in Kafka", rows), func() error {
		n, err := topicEnd(ctx, e.broker, topic)
		if err != nil {
			return err
		}
		if n < int64(rows) {
			return fmt.Errorf("%d of %d", n, rows)
		}
		return nil
	})
	ingestSecs := time.Since(began).Seconds()
	b.StopTimer()
	r.stop(b)

	args := []string{"-d", e.dsn, "--slot", recv, "--start", "--no-loop", "-E", end, "-f", "/dev/null",
		"-o", "proto_version=1", "-o", "publication_names=" + e.name}
	began = time.Now()
	out, err := exec.Command("pg_recvlogical", args...).CombinedOutput()
	recvSecs := time.Since(began).Seconds()
	if err != nil {
		b.Logf("pg_recvlogical: %v: %s (ratio not reported)", err, out)
	} else {
		b.ReportMetric(float64(rows)/recvSecs, "pg_recvlogical_rows/s")
		b.ReportMetric((float64(rows)/ingestSecs)/(float64(rows)/recvSecs), "ratio")
	}
	b.ReportMetric(float64(rows)/ingestSecs, "rows/s")
}

// BenchmarkCommitToKafkaLatency commits rows at a steady 5k rows/s (50 rows
// every 10ms) for 10s and reports commit → Kafka latency percentiles, as seen
// by a consumer (source.ts_ms is the commit time, in milliseconds): p50_ms,
// p99_ms, max_ms. To tell where a tail comes from it also reports
// to_producer_p99_ms (commit → ingest handing the record to the Kafka client,
// the record's timestamp) and commit_rtt_p99_ms (the writer's INSERT round
// trip: PostgreSQL's own commit and WAL flush, which the logical walsender
// waits for before it sends a transaction).
func BenchmarkCommitToKafkaLatency(b *testing.B) {
	for i := 0; i < b.N; i++ {
		benchLatency(b)
	}
}

func benchLatency(b *testing.B) {
	b.StopTimer()
	e := newEnvTB(b)
	tbl := e.table("steady")
	e.exec(`CREATE TABLE ` + tbl + ` (id bigint PRIMARY KEY, v text)`)
	r := start(b, e.config(tbl), ingest.Deps{})
	r.waitReady(b)
	topic := cdc.Topic("public", tbl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The broker answers a fetch as soon as MinBytes are there, so a long
	// MaxWait costs no latency. A short one does: kafka-go derives its socket
	// deadline from MaxWait, and on a loaded machine a reply arriving a little
	// late is an i/o timeout after which the reader redials and seeks, a
	// 100 ms+ gap that showed up as this benchmark's p99.
	reader := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{e.broker}, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 500 * time.Millisecond})
	defer reader.Close()
	const perTick, ticks = 50, 1000
	total := perTick * ticks
	lat := make([]float64, 0, total)
	toProducer := make([]float64, 0, total)
	done := make(chan error, 1)
	go func() {
		for len(lat) < total {
			m, err := reader.ReadMessage(ctx)
			if err != nil {
				done <- err
				return
			}
			now := time.Now()
			var env struct {
				Source struct {
					TsMs int64 `json:"ts_ms"`
				} `json:"source"`
			}
			if m.Value == nil || json.Unmarshal(m.Value, &env) != nil {
				continue
			}
			lat = append(lat, float64(now.UnixMicro()-env.Source.TsMs*1000)/1000)
			toProducer = append(toProducer, float64(m.Time.UnixMilli()-env.Source.TsMs))
		}
		done <- nil
	}()
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	b.StartTimer()
	rtt := make([]float64, 0, ticks)
	tick := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < ticks; i++ {
		<-tick.C
		began := time.Now()
		if _, err := conn.Exec(ctx, `INSERT INTO `+tbl+` SELECT g, 'x' FROM generate_series($1::bigint, $2::bigint) g`, i*perTick+1, (i+1)*perTick); err != nil {
			b.Fatal(err)
		}
		rtt = append(rtt, float64(time.Since(began).Microseconds())/1000)
	}
	tick.Stop()
	if err := <-done; err != nil {
		b.Fatalf("consume: %v", err)
	}
	b.StopTimer()
	sort.Float64s(lat)
	b.ReportMetric(lat[len(lat)/2], "p50_ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
	b.ReportMetric(p99(toProducer), "to_producer_p99_ms")
	b.ReportMetric(p99(rtt), "commit_rtt_p99_ms")
}

func p99(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)*99/100]
}
