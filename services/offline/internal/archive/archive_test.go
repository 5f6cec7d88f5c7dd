package archive_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

func testRows(topic string, part int32, first, last int64, at time.Time) []archive.Row {
	var rows []archive.Row
	for o := first; o <= last; o++ {
		r := archive.Row{
			Topic: topic, Partition: part, Offset: o,
			Key:       []byte(fmt.Sprintf("k%d", o%7)),
			Value:     []byte(fmt.Sprintf(`{"n":%d}`, o)),
			ArrivalMs: at.UnixMilli() + o,
			EventMs:   at.UnixMilli() + o - 5,
		}
		if o%5 == 0 {
			r.Value = nil // tombstone
		}
		if strings.HasPrefix(topic, "cdc.") {
			r.Op, r.After, r.LSN = "u", fmt.Sprintf(`{"id":%d}`, o), 1000+o
			r.Before = fmt.Sprintf(`{"id":%d}`, o-1)
		}
		rows = append(rows, r)
	}
	return rows
}

func create(t *testing.T) (*archive.Archive, string) {
	t.Helper()
	dir := t.TempDir()
	a, err := archive.Create(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	return a, dir
}

func scanAll(t *testing.T, a *archive.Archive, topic string) []archive.Row {
	t.Helper()
	var got []archive.Row
	err := a.Scan(context.Background(), topic, func(r *archive.Row) error {
		c := *r
		c.Key, c.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameRows(t *testing.T, got, want []archive.Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Topic != w.Topic || g.Partition != w.Partition || g.Offset != w.Offset || !bytes.Equal(g.Key, w.Key) ||
			!bytes.Equal(g.Value, w.Value) || (g.Value == nil) != (w.Value == nil) || g.ArrivalMs != w.ArrivalMs ||
			g.EventMs != w.EventMs || g.Op != w.Op || g.Before != w.Before || g.After != w.After || g.LSN != w.LSN {
			t.Fatalf("row %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

func TestWriteScan(t *testing.T) {
	ctx := context.Background()
	a, dir := create(t)
	day := time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC)
	// Partition 1 written before partition 0, and partition 0's second
	// file on the next day: Scan still yields (partition, offset) order.
	p1 := testRows("cdc.public.t", 1, 0, 9, day)
	p0a := testRows("cdc.public.t", 0, 0, 99, day)
	p0b := testRows("cdc.public.t", 0, 100, 150, day.Add(time.Hour))
	var want []archive.Row
	for _, rows := range [][]archive.Row{p1, p0b, p0a} {
		if _, err := a.WriteFile(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	want = append(append(append(want, p0a...), p0b...), p1...)
	sameRows(t, scanAll(t, a, "cdc.public.t"), want)

	wantFile := filepath.Join(dir, "cdc.public.t", "date=2026-12-01", "00000-00000000000000000100-00000000000000000150.parquet")
	if _, err := os.Stat(wantFile); err != nil {
		t.Fatalf("layout: %v", err)
	}
	if _, err := a.WriteFile(ctx, testRows("events.x", 0, 0, 0, day)); err != nil {
		t.Fatal(err)
	}
	topics, err := a.Topics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(topics) != "[cdc.public.t events.x]" {
		t.Fatalf("topics: %v", topics)
	}
}

func TestScanOverlap(t *testing.T) {
	ctx := context.Background()
	a, _ := create(t)
	day := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	all := testRows("events.x", 0, 0, 29, day)
	// Small files, a merged file over some of them (compaction before it
	// deleted them), and one that overlaps the merged one's end.
	for _, r := range [][2]int{{0, 9}, {10, 19}, {20, 29}, {5, 24}, {0, 14}} {
		if _, err := a.WriteFile(ctx, all[r[0]:r[1]+1]); err != nil {
			t.Fatal(err)
		}
	}
	sameRows(t, scanAll(t, a, "events.x"), all)
}

func TestWriteFileRejectsDisorder(t *testing.T) {
	a, _ := create(t)
	rows := testRows("events.x", 0, 0, 3, time.Now())
	rows[2], rows[3] = rows[3], rows[2]
	if _, err := a.WriteFile(context.Background(), rows); err == nil || !strings.Contains(err.Error(), "offset order") {
		t.Fatalf("got %v, want an offset order error", err)
	}
}

func TestOpenBadURL(t *testing.T) {
	ctx := context.Background()
	missing := "file://" + filepath.Join(t.TempDir(), "nope")
	for _, u := range []string{missing, "no-scheme/dir", "bogus://bucket", "file://%zz"} {
		_, err := archive.Open(ctx, u)
		if err == nil || !strings.Contains(err.Error(), u) {
			t.Errorf("Open(%q): got %v, want an error naming the URL", u, err)
		}
	}
}

func TestCorruptFile(t *testing.T) {
	ctx := context.Background()
	a, dir := create(t)
	day := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if _, err := a.WriteFile(ctx, testRows("events.x", 0, 0, 9, day)); err != nil {
		t.Fatal(err)
	}
	f, err := a.WriteFile(ctx, testRows("events.x", 0, 10, 19, day))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(f.Key))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"truncated": data[:len(data)/2],
		"garbage":   []byte("this is not parquet at all"),
		"flipped":   flip(data),
		// A footer length of 4 GiB: must fail fast, not allocate it.
		"huge footer": append(bytes.Clone(data[:len(data)-8]), 0xff, 0xff, 0xff, 0xff, 'P', 'A', 'R', '1'),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			err := a.Scan(ctx, "events.x", func(*archive.Row) error { return nil })
			if err == nil || !strings.Contains(err.Error(), f.Key) {
				t.Fatalf("got %v, want an error naming %s", err, f.Key)
			}
		})
	}
}

// flip corrupts the column data in the middle of a file.
func flip(b []byte) []byte {
	c := bytes.Clone(b)
	for i := len(c) / 3; i < len(c)/3+64 && i < len(c); i++ {
		c[i] ^= 0xff
	}
	return c
}

func TestParseKey(t *testing.T) {
	key := archive.FileKey("cdc.public.t", 3, 7, 42, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli())
	if key != "cdc.public.t/date=2026-01-02/00003-00000000000000000007-00000000000000000042.parquet" {
		t.Fatalf("key %s", key)
	}
	f, ok := archive.ParseKey(key)
	if !ok || f.Topic != "cdc.public.t" || f.Partition != 3 || f.First != 7 || f.Last != 42 || f.Date != "2026-01-02" {
		t.Fatalf("parse %s: %+v %v", key, f, ok)
	}
	imp := archive.FileKey("events.x", archive.ImportPartition, 0, 9, 0)
	if f, ok := archive.ParseKey(imp); !ok || f.Partition != archive.ImportPartition {
		t.Fatalf("parse %s: %+v %v", imp, f, ok)
	}
	for _, bad := range []string{
		key + ".1a2b.tmp", "x/date=2026-01-02/1-2.parquet", "x/2026-01-02/0-1-2.parquet",
		"x/date=2026-13-02/0-1-2.parquet", "x/date=2026-01-02/0-5-2.parquet", "x/date=2026-01-02/-1-1-2.parquet",
	} {
		if _, ok := archive.ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// FuzzDecodeFile feeds Parquet files of outside origin (mutations of a
// valid one) to the decoder: it must return an error, never panic or hang.
func FuzzDecodeFile(f *testing.F) {
	var buf bytes.Buffer
	if err := archive.Encode(&buf, testRows("cdc.public.t", 0, 0, 20, time.Unix(1e9, 0))); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("PAR1PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		_ = archive.DecodeFile(data, func(*archive.Row) error {
			n++
			return nil
		})
	})
}
