package offline_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/tributary-ml/tributary/services/offline"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func scanRows(t *testing.T, url, topic string) []archive.Row {
	t.Helper()
	ctx := context.Background()
	arc, err := archive.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	var rows []archive.Row
	if err := arc.Scan(ctx, topic, func(r *archive.Row) error {
		c := *r
		c.Key, c.Value = append([]byte(nil), r.Key...), append([]byte(nil), r.Value...)
		rows = append(rows, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestImportCSV(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	// Out of time order: the import orders by time.
	csv := writeFile(t, "clicks.csv", "user_id,page,ts_ms\nu2,/cart,1796119260000\nu1,/,1796119200000\nu1,/search,2026-12-01T10:00:30Z\n")
	res, err := offline.Import(ctx, offline.ImportConfig{Offline: url, Topic: "events.clicks", File: csv, Features: featuresDir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || res.First != 0 || res.Last != 2 || len(res.Files) != 1 || !strings.Contains(res.Files[0], "/import-") {
		t.Fatalf("result %+v", res)
	}
	rows := scanRows(t, url, "events.clicks")
	want := []struct {
		key, value string
		ms         int64
	}{
		{"u1", `{"page":"/","ts_ms":1796119200000,"user_id":"u1"}`, 1796119200000},
		{"u1", `{"page":"/search","ts_ms":"2026-12-01T10:00:30Z","user_id":"u1"}`, 1796119230000},
		{"u2", `{"page":"/cart","ts_ms":1796119260000,"user_id":"u2"}`, 1796119260000},
	}
	for i, w := range want {
		r := rows[i]
		if r.Partition != archive.ImportPartition || r.Offset != int64(i) || string(r.Key) != w.key || string(r.Value) != w.value || r.EventMs != w.ms || r.ArrivalMs != w.ms {
			t.Fatalf("row %d: %+v (value %s), want %+v", i, r, r.Value, w)
		}
	}
	// A second import continues the offsets.
	res, err = offline.Import(ctx, offline.ImportConfig{Offline: url, Topic: "events.clicks", File: csv, Features: featuresDir})
	if err != nil || res.First != 3 || res.Last != 5 {
		t.Fatalf("second import: %+v %v", res, err)
	}
	if n := len(scanRows(t, url, "events.clicks")); n != 6 {
		t.Fatalf("%d rows after two imports, want 6", n)
	}
}

func TestImportParquetCDC(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	type txn struct {
		ID        int64   `parquet:"id"`
		UserID    string  `parquet:"user_id"`
		Amount    float64 `parquet:"amount"`
		CreatedAt string  `parquet:"created_at"`
	}
	path := filepath.Join(t.TempDir(), "txns.parquet")
	if err := parquet.WriteFile(path, []txn{{1, "u1", 12.5, "2026-12-01T10:00:00Z"}, {2, "u2", 99, "2026-11-30T10:00:00Z"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := offline.Import(ctx, offline.ImportConfig{Offline: url, Topic: "cdc.public.transactions", File: path, Features: featuresDir}); err != nil {
		t.Fatal(err)
	}
	rows := scanRows(t, url, "cdc.public.transactions")
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	if r.Op != "r" || string(r.Key) != "u2" || r.After != `{"amount":99,"created_at":"2026-11-30T10:00:00Z","id":2,"user_id":"u2"}` || r.EventMs != 1796032800000 {
		t.Fatalf("first row %+v", r)
	}
}

func TestImportErrorsNameTheProblem(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	for _, tc := range []struct {
		name, file, topic, want string
	}{
		{"bad time", writeFile(t, "a.csv", "user_id,ts_ms\nu1,1796119200000\nu2,yesterday\n"), "events.clicks", `row 2: column "ts_ms"`},
		{"no time column", writeFile(t, "b.csv", "user_id,when\nu1,1\n"), "events.clicks", `no column "ts_ms"`},
		{"no view: time column required", writeFile(t, "c.csv", "x\n1\n"), "events.other", "time-column"},
		{"ragged csv", writeFile(t, "d.csv", "user_id,ts_ms\nu1\n"), "events.clicks", "line 2"},
		{"not parquet", writeFile(t, "e.parquet", "nope"), "events.clicks", "e.parquet"},
		{"extension", writeFile(t, "f.json", "{}"), "events.clicks", "not a .csv or .parquet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := offline.Import(ctx, offline.ImportConfig{Offline: url, Topic: tc.topic, File: tc.file, Features: featuresDir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
