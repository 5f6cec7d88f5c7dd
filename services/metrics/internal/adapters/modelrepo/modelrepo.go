// Package modelrepo reads what the metrics need from the model repository:
// models/<name>/<version>/baseline.json (training distributions) and the
// decision threshold in config.yaml.
package modelrepo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/tributary-ml/tributary/libs/modelrepo"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

var _ core.Catalog = (*Repo)(nil)

// Repo is a model repository directory. Lookups are cached: a model
// version's files are immutable once published.
type Repo struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex
	cache map[[2]string]core.ModelInfo
}

// New returns the repository at dir ("" for none: no baselines, default threshold).
func New(dir string, log *slog.Logger) *Repo {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Repo{dir: dir, log: log, cache: map[[2]string]core.ModelInfo{}}
}

// Known reports whether the repository holds model (a directory
// <dir>/<model>); with no repository it knows none.
func (r *Repo) Known(model string) bool {
	if r.dir == "" || model == "" || !filepath.IsLocal(model) || filepath.Base(model) != model {
		return false
	}
	fi, err := os.Stat(filepath.Join(r.dir, model))
	return err == nil && fi.IsDir()
}

// Model returns the model version's baseline and threshold. A missing or
// invalid file is logged once and means no drift (or the default threshold).
func (r *Repo) Model(model, version string) core.ModelInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := [2]string{model, version}
	if info, ok := r.cache[k]; ok {
		return info
	}
	info, err := r.load(model, version)
	if err != nil {
		r.log.Warn("model repository", "model", model, "version", version, "err", err)
	}
	r.cache[k] = info
	return info
}

func (r *Repo) load(model, version string) (core.ModelInfo, error) {
	info := core.ModelInfo{Threshold: core.DefaultThreshold}
	if r.dir == "" || !filepath.IsLocal(model) || !filepath.IsLocal(version) {
		return info, nil
	}
	var errs []error
	for _, cfgPath := range []string{
		filepath.Join(r.dir, model, version, "config.yaml"),
		filepath.Join(r.dir, model, "config.yaml"),
	} {
		b, err := os.ReadFile(cfgPath)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			break
		}
		c, err := modelrepo.ParseConfig(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cfgPath, err))
			break
		}
		if c.Threshold != nil {
			info.Threshold = *c.Threshold
		}
		break
	}
	basePath := filepath.Join(r.dir, model, version, "baseline.json")
	b, err := os.ReadFile(basePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		errs = append(errs, err)
	default:
		base, err := ParseBaseline(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", basePath, err))
		} else {
			info.Baseline = base
		}
	}
	return info, errors.Join(errs...)
}

// ParseBaseline decodes and checks a baseline.json.
func ParseBaseline(b []byte) (*core.Baseline, error) {
	var base core.Baseline
	if err := json.Unmarshal(b, &base); err != nil {
		return nil, fmt.Errorf("decode baseline: %w", err)
	}
	if err := base.Validate(); err != nil {
		return nil, err
	}
	return &base, nil
}
