// Package repository loads a model repository directory
// (models/<name>/config.yaml, models/<name>/<version>/...) and keeps it
// current: a changed or new version is loaded and warmed up with a
// prediction before the snapshot that serves it replaces the old one
// atomically; a broken artifact is refused and the previous version keeps
// serving.
package repository

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

// Options configure a Repository.
type Options struct {
	// Loaders by format; model.Loaders() plus adapters (remote).
	Loaders map[string]model.Loader
	// Warmup checks a freshly loaded version before it serves; DefaultWarmup when nil.
	Warmup func(ctx context.Context, cfg *model.Config, s model.Scorer) error
	// OnLoad is called after every load attempt of a version (err nil on success).
	OnLoad func(modelName string, version int, err error)
	Log    *slog.Logger
}

// Repository is a model repository directory kept loaded.
type Repository struct {
	dir  string
	opts Options
	cur  atomic.Pointer[model.Set]
	mu   sync.Mutex // serialises Reload
	// failed remembers refused artifacts by fingerprint (guarded by mu).
	failed map[string]string
}

// Open loads the repository at dir. It fails when dir cannot be read; a
// broken model is recorded in the snapshot's Errors and does not stop the others.
func Open(ctx context.Context, dir string, opts Options) (*Repository, error) {
	if opts.Loaders == nil {
		opts.Loaders = model.Loaders()
	}
	if opts.Warmup == nil {
		opts.Warmup = DefaultWarmup
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("models: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("models: %s is not a directory", dir)
	}
	r := &Repository{dir: dir, opts: opts, failed: map[string]string{}}
	r.cur.Store(&model.Set{Models: map[string]*model.Entry{}, Errors: map[string]string{}})
	if err := r.Reload(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Dir is the repository directory.
func (r *Repository) Dir() string { return r.dir }

// Snapshot returns the models served now.
func (r *Repository) Snapshot() *model.Set { return r.cur.Load() }

// Watch reloads the repository every interval until ctx ends.
func (r *Repository) Watch(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Reload(ctx); err != nil {
				r.opts.Log.Warn("model repository reload", "err", err)
			}
		}
	}
}

// Reload scans the directory and publishes a new snapshot. It returns an
// error only when the directory cannot be read; per-model problems land in
// the snapshot's Errors.
func (r *Repository) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("models: read %s: %w", r.dir, err)
	}
	old := r.cur.Load()
	next := &model.Set{Models: map[string]*model.Entry{}, Errors: map[string]string{}}
	for _, e := range entries {
		if e.Name()[0] == '.' || !isDir(r.dir, e) {
			continue
		}
		name := e.Name()
		if _, err := os.Stat(filepath.Join(r.dir, name, "config.yaml")); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		m, errs := r.loadModel(ctx, name, old.Models[name])
		if m != nil {
			next.Models[name] = m
		}
		if len(errs) > 0 {
			next.Errors[name] = errors.Join(errs...).Error()
		}
	}
	r.checkReferences(next)
	r.cur.Store(next)
	r.retire(old, next)
	return nil
}

// RetireGrace is how long an unloaded version's resources (a remote
// backend's connection) stay open for requests that still use it.
const RetireGrace = 30 * time.Second

// retire closes, after RetireGrace, the versions of old that next no longer serves.
func (r *Repository) retire(old, next *model.Set) {
	keep := map[*model.Version]bool{}
	for _, m := range next.Models {
		for _, v := range m.Versions {
			keep[v] = true
		}
	}
	for _, m := range old.Models {
		for _, v := range m.Versions {
			if c, ok := v.Scorer.(io.Closer); ok && !keep[v] {
				time.AfterFunc(RetireGrace, func() { _ = c.Close() })
			}
		}
	}
}

// Close releases every served version's resources; the repository must not be used afterwards.
func (r *Repository) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, m := range r.cur.Load().Models {
		for _, v := range m.Versions {
			if c, ok := v.Scorer.(io.Closer); ok {
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close %s version %d: %w", m.Name, v.Number, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// loadModel builds the model entry for name, reusing old versions whose
// artifacts did not change. On failure it keeps old.
func (r *Repository) loadModel(ctx context.Context, name string, old *model.Entry) (*model.Entry, []error) {
	dir := filepath.Join(r.dir, name)
	data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return old, []error{err}
	}
	cfg, err := model.ParseConfig(data)
	if err != nil {
		return old, []error{fmt.Errorf("%s/%w", name, err)}
	}
	if cfg.Name != name {
		return old, []error{fmt.Errorf("%s/config.yaml: name: %q differs from the directory name %q", name, cfg.Name, name)}
	}
	sum := sha256.Sum256(data)
	m := &model.Entry{Name: name, Config: cfg, Versions: map[int]*model.Version{}, ConfigHash: hex.EncodeToString(sum[:])}
	reuse := old
	if old != nil && old.ConfigHash != m.ConfigHash {
		reuse = nil // the old versions were built for another config
	}
	versions, err := listVersions(dir)
	if err != nil {
		return old, []error{err}
	}
	if len(versions) == 0 {
		return old, []error{fmt.Errorf("%s: no version directories (integer names)", name)}
	}
	want := r.wanted(cfg, versions)
	required := requiredVersions(cfg)
	latestN := cfg.VersionPolicy.Latest
	if latestN == 0 {
		latestN = 1
	}
	policyLatest := !cfg.VersionPolicy.All && len(cfg.VersionPolicy.Specific) == 0
	var errs []error
	loaded := 0
	for _, v := range versions { // descending
		if !want[v] && !required[v] {
			if !policyLatest || loaded >= latestN {
				continue
			}
		}
		ver, err := r.loadVersion(ctx, cfg, dir, v, reuse, m.ConfigHash)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", name, v, err))
			if ver == nil && required[v] {
				errs = append(errs, fmt.Errorf("%s: version %d is named by the experiment but cannot be loaded", name, v))
			}
		}
		if ver == nil {
			continue
		}
		m.Versions[v] = ver
		if policyLatest {
			loaded++
		}
	}
	if len(m.Versions) == 0 {
		errs = append(errs, fmt.Errorf("%s: no loadable version", name))
		return old, errs
	}
	m.Latest = -1
	for v := range m.Versions {
		m.Latest = max(m.Latest, v)
	}
	return m, errs
}

// wanted returns the versions the policy asks for; for "latest N" it
// returns none and the caller walks down from the newest loadable one.
func (r *Repository) wanted(cfg *model.Config, versions []int) map[int]bool {
	want := map[int]bool{}
	switch p := cfg.VersionPolicy; {
	case p.All:
		for _, v := range versions {
			want[v] = true
		}
	case len(p.Specific) > 0:
		for _, v := range p.Specific {
			want[v] = true
		}
	}
	return want
}

// requiredVersions are the versions of this model its experiment names.
func requiredVersions(cfg *model.Config) map[int]bool {
	req := map[int]bool{}
	if cfg.Experiment == nil {
		return req
	}
	for _, v := range append(slices.Clone(cfg.Experiment.Variants), cfg.Experiment.Shadows...) {
		if (v.Model == "" || v.Model == cfg.Name) && v.Version > 0 {
			req[v.Version] = true
		}
	}
	return req
}

func (r *Repository) loadVersion(ctx context.Context, cfg *model.Config, dir string, v int, old *model.Entry, configHash string) (*model.Version, error) {
	vdir := filepath.Join(dir, strconv.Itoa(v))
	fp, err := fingerprint(vdir, configHash)
	if err != nil {
		return nil, err
	}
	var prev *model.Version
	if old != nil {
		prev = old.Versions[v]
	}
	if prev != nil && prev.Fingerprint == fp {
		return prev, nil
	}
	if msg, ok := r.failed[fp]; ok {
		// Refused before and unchanged since: do not load it again on every poll.
		return prev, errors.New(msg)
	}
	loader, ok := r.opts.Loaders[cfg.Format]
	if !ok {
		return nil, fmt.Errorf("format %q: no loader in this build", cfg.Format)
	}
	s, err := loader(cfg, vdir)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = r.opts.Warmup(wctx, cfg, s)
		cancel()
		if err != nil {
			err = fmt.Errorf("warm-up prediction: %w", err)
		}
	}
	if r.opts.OnLoad != nil {
		r.opts.OnLoad(cfg.Name, v, err)
	}
	if err != nil {
		r.failed[fp] = err.Error()
		if prev != nil {
			// The artifact changed and the new one is broken: keep serving the old one.
			r.opts.Log.Warn("model version refused, previous artifact keeps serving", "model", cfg.Name, "version", v, "err", err)
			return prev, err
		}
		r.opts.Log.Warn("model version refused", "model", cfg.Name, "version", v, "err", err)
		return nil, err
	}
	r.opts.Log.Info("model version loaded", "model", cfg.Name, "version", v, "format", cfg.Format)
	return &model.Version{Number: v, Scorer: s, LoadedAt: time.Now(), Fingerprint: fp}, nil
}

// DefaultWarmup scores one row of the declared defaults (member scores of
// 0.5 for an ensemble) and checks that the result is a finite number.
func DefaultWarmup(ctx context.Context, cfg *model.Config, s model.Scorer) error {
	var x []float64
	if cfg.Format == "ensemble" {
		x = make([]float64, len(cfg.Ensemble.Members))
		for i := range x {
			x[i] = 0.5
		}
	} else {
		x = make([]float64, len(cfg.Inputs))
		for i := range cfg.Inputs {
			x[i] = cfg.Inputs[i].ApplyDefault()
		}
	}
	out := make([]float64, 1)
	if err := s.Score(ctx, x, len(x), out); err != nil {
		return err
	}
	if math.IsNaN(out[0]) || math.IsInf(out[0], 0) {
		return fmt.Errorf("score %v is not a finite number", out[0])
	}
	return nil
}

// checkReferences records errors for experiments and ensembles that name
// models or versions the snapshot does not hold.
func (r *Repository) checkReferences(s *model.Set) {
	for name, m := range s.Models {
		var errs []string
		check := func(what, ref string, v int) {
			target := m
			if ref != "" && ref != name {
				t, ok := s.Models[ref]
				if !ok {
					errs = append(errs, fmt.Sprintf("%s: model %q is not loaded", what, ref))
					return
				}
				target = t
			}
			if _, ok := target.Version(v); !ok {
				errs = append(errs, fmt.Sprintf("%s: version %d of %q is not loaded", what, v, target.Name))
			}
		}
		if e := m.Config.Experiment; e != nil {
			for _, v := range append(slices.Clone(e.Variants), e.Shadows...) {
				check("experiment variant "+v.Name, v.Model, v.Version)
			}
		}
		if e := m.Config.Ensemble; e != nil {
			for _, mem := range e.Members {
				check("ensemble member "+mem.Name, mem.Model, mem.Version)
			}
		}
		if len(errs) > 0 {
			msg := fmt.Sprint(errs)
			if prev := s.Errors[name]; prev != "" {
				msg = prev + "\n" + msg
			}
			s.Errors[name] = msg
		}
	}
}

// isDir reports whether e, an entry of dir, is a directory or a symbolic
// link to one. A Kubernetes ConfigMap volume shows each top-level entry as
// a link into its current data directory (..data/<name>), and git-sync
// publishes a checkout the same way.
func isDir(dir string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && fi.IsDir()
}

// listVersions returns the integer-named subdirectories, newest first.
func listVersions(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		if !isDir(dir, e) {
			continue
		}
		v, err := strconv.Atoi(e.Name())
		if err != nil || v < 1 || strconv.Itoa(v) != e.Name() {
			continue
		}
		out = append(out, v)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(out)))
	return out, nil
}

// fingerprint identifies a version directory's content (names, sizes,
// modification times) under one config.
func fingerprint(dir, configHash string) (string, error) {
	h := sha256.New()
	h.Write([]byte(configHash))
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", path, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
