package archiver

import (
	"context"
	"time"

	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

// Compact merges the small files of finished days: per topic, partition and
// day, consecutive files are merged into files of up to RollBytes. Each
// merge writes the merged file first and then deletes the small ones, so a
// crash in between leaves overlapping files, which readers de-duplicate and
// the next Compact cleans up (a file whose range another file covers is
// deleted). A day is finished when it ended more than an hour and a roll
// interval ago (a file started before midnight may still be written after).
func (a *Archiver) Compact(ctx context.Context) error {
	cutoff := a.cfg.Now().Add(-time.Hour - a.cfg.RollInterval).UTC().Format(time.DateOnly)
	for _, t := range a.cfg.Topics {
		files, err := a.arc.Files(ctx, t)
		if err != nil {
			return err
		}
		type day struct {
			date string
			part int32
		}
		groups := map[day][]archive.FileInfo{}
		var order []day
		for _, f := range files {
			if f.Date >= cutoff {
				continue
			}
			k := day{f.Date, f.Partition}
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], f)
		}
		for _, k := range order {
			if err := a.compactDay(ctx, groups[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

// compactDay compacts one partition's files of one day (sorted by first
// offset, longest first).
func (a *Archiver) compactDay(ctx context.Context, files []archive.FileInfo) error {
	// Drop files another file covers (left by a crash mid-compaction).
	var live []archive.FileInfo
	for _, f := range files {
		if n := len(live); n > 0 && f.Last <= live[n-1].Last {
			if err := a.arc.Delete(ctx, f.Key); err != nil {
				return err
			}
			continue
		}
		live = append(live, f)
	}
	for i := 0; i < len(live); {
		j, size := i, int64(0)
		for j < len(live) && (j == i || size+live[j].Size <= a.cfg.RollBytes) {
			size += live[j].Size
			j++
		}
		if j-i >= 2 {
			if err := a.merge(ctx, live[i:j]); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

func (a *Archiver) merge(ctx context.Context, files []archive.FileInfo) error {
	var rows []archive.Row
	next := files[0].First
	for _, f := range files {
		if err := a.arc.ReadFile(ctx, f, func(r *archive.Row) error {
			if r.Offset < next {
				return nil // overlapping files: each offset once
			}
			next = r.Offset + 1
			c := *r
			c.Key, c.Value = cloneBytes(r.Key), cloneBytes(r.Value)
			rows = append(rows, c)
			return nil
		}); err != nil {
			return err
		}
	}
	merged, err := a.write(ctx, rows)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f.Key == merged.Key {
			continue
		}
		if err := a.arc.Delete(ctx, f.Key); err != nil {
			return err
		}
	}
	a.compacted.Add(int64(len(files)))
	return nil
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
