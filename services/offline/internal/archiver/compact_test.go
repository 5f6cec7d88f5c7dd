package archiver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/archiver"
)

func TestCompactMergesFinishedDays(t *testing.T) {
	ctx := context.Background()
	arc, err := archive.Create(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	row := func(part int32, o int64, at time.Time) archive.Row {
		return archive.Row{Topic: "events.x", Partition: part, Offset: o, Key: []byte("k"), Value: []byte(fmt.Sprint(o)), ArrivalMs: at.UnixMilli()}
	}
	write := func(part int32, first, last int64, at time.Time) {
		var rows []archive.Row
		for o := first; o <= last; o++ {
			rows = append(rows, row(part, o, at))
		}
		if _, err := arc.WriteFile(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	yesterday, today := now.Add(-24*time.Hour), now.Add(-time.Minute)
	for p := int32(0); p < 2; p++ {
		for i := int64(0); i < 5; i++ {
			write(p, i*10, i*10+9, yesterday)
		}
		write(p, 50, 59, today) // today's stay as they are
	}
	// A crash mid-compaction left a merged file beside two it covers.
	write(1, 0, 19, yesterday)
	a, err := archiver.New(archiver.Config{Brokers: []string{"unused:9092"}, Topics: []string{"events.x"}, Now: func() time.Time { return now }}, arc)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	files, err := arc.Files(ctx, "events.x")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, fmt.Sprintf("%d:%d-%d@%s", f.Partition, f.First, f.Last, f.Date))
	}
	want := "[0:0-49@2026-12-01 0:50-59@2026-12-02 1:0-49@2026-12-01 1:50-59@2026-12-02]"
	if fmt.Sprint(got) != want {
		t.Fatalf("files after compaction %v, want %s", got, want)
	}
	var offsets []string
	if err := arc.Scan(ctx, "events.x", func(r *archive.Row) error {
		if string(r.Value) != fmt.Sprint(r.Offset) {
			return fmt.Errorf("%d/%d holds %q", r.Partition, r.Offset, r.Value)
		}
		offsets = append(offsets, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(offsets) != 120 {
		t.Fatalf("%d rows after compaction, want 120", len(offsets))
	}
}

func TestExpireDeletesDaysPastRetention(t *testing.T) {
	ctx := context.Background()
	arc, err := archive.Create(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	now := time.Date(2026, 12, 10, 12, 0, 0, 0, time.UTC)
	for i, day := range []int{1, 2, 3, 9, 10} {
		at := time.Date(2026, 12, day, 23, 0, 0, 0, time.UTC).UnixMilli()
		if _, err := arc.WriteFile(ctx, []archive.Row{{Topic: "events.x", Offset: int64(i), ArrivalMs: at}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		retention time.Duration
		want      string
	}{
		{0, "[2026-12-01 2026-12-02 2026-12-03 2026-12-09 2026-12-10]"},
		// Seven days before noon of the 10th is noon of the 3rd: the 1st
		// and 2nd ended before it, the 3rd did not.
		{7 * 24 * time.Hour, "[2026-12-03 2026-12-09 2026-12-10]"},
	} {
		a, err := archiver.New(archiver.Config{Brokers: []string{"unused:9092"}, Topics: []string{"events.x"}, Retention: tc.retention, Now: func() time.Time { return now }}, arc)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		files, err := arc.Files(ctx, "events.x")
		if err != nil {
			t.Fatal(err)
		}
		var days []string
		for _, f := range files {
			days = append(days, f.Date)
		}
		if fmt.Sprint(days) != tc.want {
			t.Fatalf("retention %s: days %v, want %s", tc.retention, days, tc.want)
		}
	}
}
