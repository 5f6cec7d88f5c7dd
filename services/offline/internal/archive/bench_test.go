package archive_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

// benchRows are click-like records: a JSON value of ~90 bytes with its
// event time, as the demo produces them.
func benchRows(n int) []archive.Row {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	rows := make([]archive.Row, n)
	for i := range rows {
		rows[i] = archive.Row{
			Topic: "events.clicks", Offset: int64(i), Key: []byte(fmt.Sprintf("u%05d", i%5000)),
			Value:     []byte(fmt.Sprintf(`{"page":"/search","ts_ms":%d,"user_id":"u%05d"}`, at+int64(i)*10, i%5000)),
			ArrivalMs: at + int64(i)*10 + 3, EventMs: at + int64(i)*10,
		}
	}
	return rows
}

// BenchmarkWriteFile: rows/s into one file:// archive file.
func BenchmarkWriteFile(b *testing.B) {
	ctx := context.Background()
	a, err := archive.Create(ctx, "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rows := benchRows(100_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range rows {
			rows[j].Offset = int64(i*len(rows) + j)
		}
		if _, err := a.WriteFile(ctx, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rows))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkScan: rows/s read back through Scan (the training-set engine's path).
func BenchmarkScan(b *testing.B) {
	ctx := context.Background()
	a, err := archive.Create(ctx, "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rows := benchRows(100_000)
	for k := 0; k < 4; k++ {
		if _, err := a.WriteFile(ctx, rows[k*25_000:(k+1)*25_000]); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		if err := a.Scan(ctx, "events.clicks", func(*archive.Row) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}
