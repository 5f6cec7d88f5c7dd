// Package embedded is the in-process metrics store: the rows the service
// emitted (or read back from metrics.model_minute at start), answering the
// same queries as Pinot.
package embedded

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

var (
	_ core.RowReader = (*Store)(nil)
	_ core.RowWriter = (*Store)(nil)
)

// Store keeps rows by key; an upsert replaces the row (full state). Rows
// older than the retention behind the newest row are dropped, so memory
// stays bounded however long the service runs.
type Store struct {
	mu        sync.RWMutex
	rows      map[core.Key]core.Row
	retention int64
	newest    int64
	pruned    int64 // newest minute at the last prune
}

// New returns an empty store keeping retention of minutes (0: forever).
func New(retention time.Duration) *Store {
	return &Store{rows: map[core.Key]core.Row{}, retention: retention.Milliseconds()}
}

// Upsert replaces the rows with the same keys.
func (s *Store) Upsert(_ context.Context, rows []core.Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		if s.retention > 0 && r.Minute < s.newest-s.retention {
			continue
		}
		s.rows[r.Key] = r
		if r.Minute > s.newest {
			s.newest = r.Minute
		}
	}
	// Prune at most once per minute of event time.
	if s.retention > 0 && s.newest > s.pruned {
		s.pruned = s.newest
		for k := range s.rows {
			if k.Minute < s.newest-s.retention {
				delete(s.rows, k)
			}
		}
	}
	return nil
}

// Len is the number of rows held.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.rows)
}

// Minutes returns the rows q selects in minute, version, variant order.
func (s *Store) Minutes(ctx context.Context, q core.Query) ([]core.Row, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []core.Row
	for k, r := range s.rows {
		if k.Model != q.Model || k.Minute < q.FromMs || k.Minute >= q.ToMs ||
			(q.Version != "" && k.Version != q.Version) || (q.Variant != "" && k.Variant != q.Variant) {
			continue
		}
		out = append(out, r)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return core.LessRow(out[i], out[j]) })
	if q.Limit > 0 && len(out) > q.Limit+1 {
		out = out[:q.Limit+1]
	}
	return out, nil
}

// Models lists the model keys with rows in [fromMs, toMs).
func (s *Store) Models(ctx context.Context, fromMs, toMs int64) ([]core.ModelKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	seen := map[core.ModelKey]struct{}{}
	for k := range s.rows {
		if k.Minute >= fromMs && k.Minute < toMs {
			seen[k.ModelKey] = struct{}{}
		}
	}
	s.mu.RUnlock()
	out := make([]core.ModelKey, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return core.LessModelKey(out[i], out[j]) })
	return out, nil
}
