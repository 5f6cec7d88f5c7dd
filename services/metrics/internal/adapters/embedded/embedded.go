// Package embedded is the in-process metrics store: the rows the service
// emitted (or read back from metrics.model_minute at start), answering the
// same queries as Pinot.
package embedded

import (
	"context"
	"sort"
	"sync"

	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

var (
	_ core.RowReader = (*Store)(nil)
	_ core.RowWriter = (*Store)(nil)
)

// Store keeps rows by key; an upsert replaces the row (full state).
type Store struct {
	mu   sync.RWMutex
	rows map[core.Key]core.Row
}

// New returns an empty store.
func New() *Store { return &Store{rows: map[core.Key]core.Row{}} }

// Upsert replaces the rows with the same keys.
func (s *Store) Upsert(_ context.Context, rows []core.Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		s.rows[r.Key] = r
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
