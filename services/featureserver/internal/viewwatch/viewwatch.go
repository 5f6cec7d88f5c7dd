// Package viewwatch loads feature views from their YAML directory into the
// core catalog and reloads them when the files change. A change that does
// not validate is reported and the views served before stay in place.
package viewwatch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/services/featureserver/internal/core"
)

// Watcher keeps a catalog in step with a directory of feature views.
type Watcher struct {
	dir     string
	catalog *core.Catalog
	log     *slog.Logger

	mu      sync.Mutex
	sum     [32]byte
	lastErr error
}

// Load reads dir once and returns a watcher over the catalog it filled;
// invalid views at start are an error (the service refuses to start).
func Load(dir string, log *slog.Logger) (*Watcher, *core.Catalog, error) {
	sum, err := fingerprint(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("features: %w", err)
	}
	views, err := featurespec.LoadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("features: %w", err)
	}
	c := core.NewCatalog(views)
	return &Watcher{dir: dir, catalog: c, log: log, sum: sum}, c, nil
}

// Check reloads the views when the files changed since the last check. It
// reports whether a new set of views is now served, and why not when the
// changed files do not load.
func (w *Watcher) Check() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sum, err := fingerprint(w.dir)
	if err != nil {
		w.lastErr = err
		return false, err
	}
	if sum == w.sum {
		return false, nil
	}
	views, err := featurespec.LoadDir(w.dir)
	// Whatever the outcome, this content was looked at; an invalid edit
	// is not retried (and re-logged) until the files change again.
	w.sum = sum
	if err != nil {
		w.lastErr = fmt.Errorf("reload feature views (still serving the previous ones): %w", err)
		return false, w.lastErr
	}
	w.lastErr = nil
	w.catalog.Set(views)
	return true, nil
}

// Err is the last reload error, or nil; it feeds the readiness check.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// Run checks every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		changed, err := w.Check()
		switch {
		case err != nil:
			w.log.Warn("feature views not reloaded", "dir", w.dir, "err", err)
		case changed:
			w.log.Info("feature views reloaded", "dir", w.dir, "views", len(w.catalog.Views().All()))
		}
	}
}

// fingerprint hashes the names and contents of the view files in dir.
func fingerprint(dir string) ([32]byte, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return [32]byte{}, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return [32]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(f), len(b))
		h.Write(b)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out, nil
}
