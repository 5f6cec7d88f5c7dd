// Package archiver copies Kafka topics into the archive with an
// exactly-once effect: each partition is read from the offset after the
// last one its files hold, rows are buffered and written as one file per
// partition and offset range when the buffer is big or old enough, and only
// then is the offset committed. A crash at any point leaves either a whole
// file or none (the blob writer publishes a file on Close), and the next run
// starts after the last whole file: no duplicate, no gap.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
)

// Config configures an Archiver; zero values get the defaults.
type Config struct {
	Brokers []string
	// Topics are archived; Views give their event times and formats.
	Topics []string
	Views  []*featurespec.View
	// RollBytes closes a file when its records reach this size (default 64 MiB).
	RollBytes int64
	// RollInterval closes a file this long after its first record (default 1m).
	RollInterval time.Duration
	// Retention deletes files whose day ended longer ago (0 keeps them).
	Retention time.Duration
	// Discover is how often topics are checked for new partitions (default 5s).
	Discover time.Duration
	// CompactEvery is how often small files of finished days are merged
	// (default 1h; negative disables compaction).
	CompactEvery time.Duration
	// GroupID is the consumer group offsets are committed to (default
	// tributary-offline), so Kafka tools show the archive's lag.
	GroupID string
	Log     *slog.Logger
	// Now is the clock of retention (time.Now when nil).
	Now func() time.Time
}

// DefaultGroupID is the group the archive's offsets are committed to.
const DefaultGroupID = "tributary-offline"

// Stats counts what the archiver wrote.
type Stats struct {
	// Rows, Files and Bytes were written; Deleted files expired; Pending
	// records are read and buffered, not yet written; Compacted small
	// files were merged into bigger ones; Lost records expired from Kafka
	// before they were archived (the archiver was down for longer than
	// Kafka's retention).
	Rows, Files, Bytes, Deleted, Pending, Compacted, Lost int64
}

// Archiver archives topics; Run does the work.
type Archiver struct {
	cfg   Config
	arc   *archive.Archive
	plans map[string]Plan
	log   *slog.Logger

	rows, files, bytes, deleted, pending, compacted, lost atomic.Int64
	mu                                                    sync.Mutex
	readers                                               map[tp]*kafka.PartitionReader
}

type tp struct {
	topic string
	part  int
}

// New builds an archiver writing to arc.
func New(cfg Config, arc *archive.Archive) (*Archiver, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("archiver: no brokers")
	}
	if len(cfg.Topics) == 0 {
		return nil, errors.New("archiver: no topics")
	}
	if cfg.RollBytes <= 0 {
		cfg.RollBytes = 64 << 20
	}
	if cfg.RollInterval <= 0 {
		cfg.RollInterval = time.Minute
	}
	if cfg.Discover <= 0 {
		cfg.Discover = 5 * time.Second
	}
	if cfg.CompactEvery == 0 {
		cfg.CompactEvery = time.Hour
	}
	if cfg.GroupID == "" {
		cfg.GroupID = DefaultGroupID
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Topics = slices.Compact(slices.Sorted(slices.Values(cfg.Topics)))
	return &Archiver{cfg: cfg, arc: arc, plans: Plans(cfg.Views, cfg.Topics), log: cfg.Log, readers: map[tp]*kafka.PartitionReader{}}, nil
}

// Stats returns the counts so far.
func (a *Archiver) Stats() Stats {
	return Stats{Rows: a.rows.Load(), Files: a.files.Load(), Bytes: a.bytes.Load(), Deleted: a.deleted.Load(), Pending: a.pending.Load(), Compacted: a.compacted.Load(), Lost: a.lost.Load()}
}

// Lag is the records the partitions' high watermarks are ahead of what was
// read, summed.
func (a *Archiver) Lag() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, r := range a.readers {
		n += r.Lag()
	}
	return n
}

// Run archives until ctx ends; then it writes what it buffered and returns.
func (a *Archiver) Run(ctx context.Context) error {
	for _, t := range a.cfg.Topics {
		if err := a.arc.RemoveTemporary(ctx, t); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	started := map[tp]bool{}
	discover := func() error {
		for _, t := range a.cfg.Topics {
			parts, err := kafka.Partitions(gctx, a.cfg.Brokers, t)
			if err != nil {
				return err
			}
			var fresh []int
			for _, p := range parts {
				if !started[tp{t, p}] {
					fresh = append(fresh, p)
				}
			}
			if len(fresh) == 0 {
				continue
			}
			next, err := a.resume(gctx, t, fresh)
			if err != nil {
				return err
			}
			for _, p := range fresh {
				started[tp{t, p}] = true
				from := next[p]
				a.log.Info("archiving partition", "topic", t, "partition", p, "from", from)
				g.Go(func() error { return a.partition(gctx, t, p, from) })
			}
		}
		return nil
	}
	g.Go(func() error {
		var lastCompact time.Time
		tick := time.NewTicker(a.cfg.Discover)
		defer tick.Stop()
		for {
			if err := discover(); err != nil {
				if gctx.Err() != nil {
					return nil
				}
				a.log.Warn("discover partitions", "err", err)
			}
			if err := a.Expire(gctx); err != nil && gctx.Err() == nil {
				a.log.Warn("retention", "err", err)
			}
			if a.cfg.CompactEvery > 0 && time.Since(lastCompact) >= a.cfg.CompactEvery {
				lastCompact = time.Now()
				if err := a.Compact(gctx); err != nil && gctx.Err() == nil {
					a.log.Warn("compaction", "err", err)
				}
			}
			select {
			case <-gctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	return g.Wait()
}

// resume returns where each partition continues: after the last offset its
// files hold, or at the group's committed offset when that is further on
// (retention deleted the files).
func (a *Archiver) resume(ctx context.Context, topic string, parts []int) (map[int]int64, error) {
	next := map[int]int64{}
	files, err := a.arc.Files(ctx, topic)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Partition >= 0 && f.Last+1 > next[int(f.Partition)] {
			next[int(f.Partition)] = f.Last + 1
		}
	}
	committed, err := kafka.CommittedOffsets(ctx, a.cfg.Brokers, a.cfg.GroupID, topic, parts)
	if err != nil {
		a.log.Warn("read committed offsets; resuming from the files alone", "topic", topic, "err", err)
	}
	for p, o := range committed {
		next[p] = max(next[p], o)
	}
	return next, nil
}

// partition archives one partition from offset next on.
func (a *Archiver) partition(ctx context.Context, topic string, part int, next int64) error {
	// Records Kafka's retention removed before they were archived are
	// lost to the archive: count them, say so, and continue at the log
	// start explicitly (kafka-go retries an out-of-range offset rather
	// than moving on).
	if first, _, err := kafka.PartitionOffsets(ctx, a.cfg.Brokers, topic, part); err != nil {
		a.log.Warn("read the partition's log start", "topic", topic, "partition", part, "err", err)
	} else if next < first {
		a.log.Warn("records expired from Kafka before they were archived", "topic", topic, "partition", part, "from", next, "to", first-1)
		a.lost.Add(first - next)
		next = first
	}
	r, err := kafka.NewPartitionReader(a.cfg.Brokers, topic, part, next)
	if err != nil {
		return err
	}
	key := tp{topic, part}
	a.mu.Lock()
	a.readers[key] = r
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.readers, key)
		a.mu.Unlock()
		if err := r.Close(); err != nil {
			a.log.Warn("close partition reader", "topic", topic, "partition", part, "err", err)
		}
	}()
	pl := a.plans[topic]
	var (
		buf    []archive.Row
		size   int64
		opened time.Time
	)
	flush := func(ctx context.Context) error {
		if len(buf) == 0 {
			return nil
		}
		f, err := a.write(ctx, buf)
		if err != nil {
			return err
		}
		a.rows.Add(int64(len(buf)))
		a.pending.Add(-int64(len(buf)))
		a.files.Add(1)
		a.bytes.Add(f.Size)
		next = f.Last + 1
		clear(buf)
		buf, size = buf[:0], 0
		// The file is durable: the group may move past it.
		if err := kafka.CommitOffsets(ctx, a.cfg.Brokers, a.cfg.GroupID, map[string]map[int]int64{topic: {part: next}}); err != nil {
			a.log.Warn("commit offset", "topic", topic, "partition", part, "err", err)
		}
		return nil
	}
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if len(buf) > 0 {
			fctx, cancel = context.WithDeadline(ctx, opened.Add(a.cfg.RollInterval))
		}
		m, err := r.Fetch(fctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			// Stopping: write what is buffered so it is not read again.
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			return flush(sctx)
		case errors.Is(err, context.DeadlineExceeded):
			if err := flush(ctx); err != nil {
				return err
			}
			continue
		default:
			a.log.Warn("kafka fetch", "topic", topic, "partition", part, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		if m.Offset < next {
			continue // already archived
		}
		if len(buf) == 0 {
			opened = time.Now()
		}
		buf = append(buf, pl.Row(&m))
		a.pending.Add(1)
		size += int64(len(m.Key) + len(m.Value) + 64)
		if size >= a.cfg.RollBytes || time.Since(opened) >= a.cfg.RollInterval {
			if err := flush(ctx); err != nil {
				return err
			}
		}
	}
}

// write writes one file, retrying a failed write a few times (object
// stores have hiccups; a retry rewrites the same name).
func (a *Archiver) write(ctx context.Context, rows []archive.Row) (archive.FileInfo, error) {
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			a.log.Warn("write archive file; retrying", "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return archive.FileInfo{}, errors.Join(err, ctx.Err())
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		var f archive.FileInfo
		if f, err = a.arc.WriteFile(ctx, rows); err == nil {
			return f, nil
		}
	}
	return archive.FileInfo{}, err
}

// Expire deletes the files of days that ended longer than the retention
// ago (nothing when the retention is 0).
func (a *Archiver) Expire(ctx context.Context) error {
	if a.cfg.Retention <= 0 {
		return nil
	}
	// A day ended before cutoff when it is before cutoff's date.
	cutoff := a.cfg.Now().Add(-a.cfg.Retention).UTC().Format(time.DateOnly)
	for _, t := range a.cfg.Topics {
		files, err := a.arc.Files(ctx, t)
		if err != nil {
			return err
		}
		for _, f := range files {
			if f.Date < cutoff {
				if err := a.arc.Delete(ctx, f.Key); err != nil {
					return err
				}
				a.deleted.Add(1)
			}
		}
	}
	return nil
}

// String describes the archiver for logs.
func (a *Archiver) String() string {
	return fmt.Sprintf("archiver of %d topics into %s", len(a.cfg.Topics), a.arc.URL())
}
