package repository

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/modelserver/internal/model"
)

const lrConfig = `name: lr
format: logistic
inputs:
  - {name: a, source: request, default: 1}
`

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func weights(w string) string { return `{"weights": {"a": ` + w + `}, "bias": 0}` }

type loads struct {
	mu   sync.Mutex
	errs map[string]int
	oks  map[string]int
}

func (l *loads) record(name string, v int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := name + "/" + strconv.Itoa(v)
	if err != nil {
		l.errs[k]++
	} else {
		l.oks[k]++
	}
}

func open(t *testing.T, dir string) (*Repository, *loads) {
	t.Helper()
	l := &loads{errs: map[string]int{}, oks: map[string]int{}}
	r, err := Open(context.Background(), dir, Options{OnLoad: l.record})
	if err != nil {
		t.Fatal(err)
	}
	return r, l
}

// score runs the served version of lr on input a = 1.
func score(t *testing.T, s *model.Set) (int, float64) {
	t.Helper()
	m, ok := s.Get("lr")
	if !ok {
		t.Fatalf("lr not served; errors %v", s.Errors)
	}
	v, _ := m.Version(0)
	out := make([]float64, 1)
	if err := v.Scorer.Score(context.Background(), []float64{1}, 1, out); err != nil {
		t.Fatal(err)
	}
	return v.Number, out[0]
}

func TestHotReloadMovesToNewVersionsAndRefusesBrokenOnes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "lr/config.yaml"), lrConfig)
	write(t, filepath.Join(dir, "lr/1/model.json"), weights("1"))
	write(t, filepath.Join(dir, "lr/2/model.json"), weights("2"))
	r, l := open(t, dir)
	ctx := context.Background()

	if v, s := score(t, r.Snapshot()); v != 2 || s != model.Sigmoid(2) {
		t.Fatalf("served v%d score %v, want v2 %v", v, s, model.Sigmoid(2))
	}
	if m, _ := r.Snapshot().Get("lr"); len(m.Versions) != 1 {
		t.Errorf("latest-1 policy loaded versions %v", m.VersionNumbers())
	}

	// A new good version takes over.
	write(t, filepath.Join(dir, "lr/3/model.json"), weights("3"))
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if v, s := score(t, r.Snapshot()); v != 3 || s != model.Sigmoid(3) {
		t.Fatalf("after adding v3: v%d %v", v, s)
	}

	// A broken newer artifact is refused; v3 keeps serving; the error names the version and the problem.
	write(t, filepath.Join(dir, "lr/4/model.json"), `{"weights": {"a": }`)
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := score(t, r.Snapshot()); v != 3 {
		t.Fatalf("after broken v4: serving v%d, want v3", v)
	}
	if msg := r.Snapshot().Errors["lr"]; !strings.Contains(msg, "lr/4") || !strings.Contains(msg, "model.json") {
		t.Errorf("error for broken v4: %q", msg)
	}
	// A version whose warm-up prediction is not finite is refused too.
	write(t, filepath.Join(dir, "lr/config.yaml"), strings.Replace(lrConfig, "logistic", "linear", 1))
	write(t, filepath.Join(dir, "lr/5/model.json"), `{"weights": {"a": 1e308}, "bias": 1e308}`)
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	snap := r.Snapshot()
	if v, _ := score(t, snap); v != 3 {
		t.Fatalf("after non-finite v5: serving v%d, want v3 (reloaded under the new config)", v)
	}
	if msg := snap.Errors["lr"]; !strings.Contains(msg, "lr/5: warm-up prediction") {
		t.Errorf("error for v5: %q", msg)
	}
	// Refused artifacts are not loaded again on every poll.
	before := l.errs["lr/4"]
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if l.errs["lr/4"] != before || before == 0 {
		t.Errorf("load attempts of the unchanged broken v4: %d then %d", before, l.errs["lr/4"])
	}
	// Fixing v5 moves traffic to it.
	write(t, filepath.Join(dir, "lr/5/model.json"), weights("5"))
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if v, s := score(t, r.Snapshot()); v != 5 || s != 5 {
		t.Fatalf("after fixing v5: v%d %v, want v5 linear score 5", v, s)
	}
}

func TestChangedArtifactThatBreaksKeepsThePreviousOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "lr/config.yaml"), lrConfig)
	write(t, filepath.Join(dir, "lr/1/model.json"), weights("1"))
	r, _ := open(t, dir)
	write(t, filepath.Join(dir, "lr/1/model.json"), `not json at all`)
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, s := score(t, r.Snapshot()); v != 1 || s != model.Sigmoid(1) {
		t.Errorf("serving v%d %v, want the old artifact of v1", v, s)
	}
	if r.Snapshot().Errors["lr"] == "" {
		t.Error("no error recorded for the broken artifact")
	}
	// A broken config.yaml keeps the whole model as it was.
	write(t, filepath.Join(dir, "lr/config.yaml"), "name: lr\nformat: nope\n")
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := score(t, r.Snapshot()); v != 1 {
		t.Errorf("serving v%d after a broken config", v)
	}
	if msg := r.Snapshot().Errors["lr"]; !strings.Contains(msg, "format:") {
		t.Errorf("config error %q does not name the field", msg)
	}
	// Removing the model unloads it.
	if err := os.RemoveAll(filepath.Join(dir, "lr")); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Snapshot().Get("lr"); ok {
		t.Error("removed model still served")
	}
}

func TestVersionPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, policy string
		want         []int
		latest       int
	}{
		{"latest 2", "version_policy: {latest: 2}\n", []int{2, 3}, 3},
		{"all", "version_policy: {all: true}\n", []int{1, 2, 3}, 3},
		{"specific", "version_policy: {specific: [1]}\n", []int{1}, 1},
		{"experiment versions stay loaded", "experiment: {variants: [{name: a, version: 1, weight: 1}, {name: b, version: 3, weight: 1}]}\n", []int{1, 3}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "lr/config.yaml"), lrConfig+tc.policy)
			for _, v := range []string{"1", "2", "3"} {
				write(t, filepath.Join(dir, "lr", v, "model.json"), weights(v))
			}
			r, _ := open(t, dir)
			m, ok := r.Snapshot().Get("lr")
			if !ok {
				t.Fatalf("not loaded: %v", r.Snapshot().Errors)
			}
			if got := m.VersionNumbers(); len(got) != len(tc.want) || got[0] != tc.want[0] || got[len(got)-1] != tc.want[len(tc.want)-1] || m.Latest != tc.latest {
				t.Errorf("versions %v latest %d, want %v latest %d", got, m.Latest, tc.want, tc.latest)
			}
		})
	}
}

// TestConfigMapLayoutIsServed lays the repository out the way a Kubernetes
// ConfigMap volume does (deploy/k8s mounts the model repository so): the
// files live under a hidden timestamped directory, ..data links to it, and
// every top-level entry is a link through ..data.
func TestConfigMapLayoutIsServed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_12_02_01_00_00.000000001")
	write(t, filepath.Join(data, "lr/config.yaml"), lrConfig)
	write(t, filepath.Join(data, "lr/1/model.json"), weights("2"))
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "lr"), filepath.Join(dir, "lr")); err != nil {
		t.Fatal(err)
	}
	r, _ := open(t, dir)
	if v, got := score(t, r.Snapshot()); v != 1 || got <= 0.5 {
		t.Fatalf("served version %d scoring %v, want version 1 of the linked model", v, got)
	}
	if len(r.Snapshot().Errors) != 0 {
		t.Errorf("errors %v: the hidden data directory must not be read as a model", r.Snapshot().Errors)
	}
}

func TestReferencesToMissingModelsAreReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "ens/config.yaml"), "name: ens\nformat: ensemble\nensemble: {combine: average, members: [{model: ghost, weight: 1}]}\n")
	write(t, filepath.Join(dir, "ens/1/.keep"), "")
	r, _ := open(t, dir)
	if msg := r.Snapshot().Errors["ens"]; !strings.Contains(msg, `model "ghost" is not loaded`) {
		t.Errorf("errors %q", msg)
	}
	if _, err := Open(context.Background(), filepath.Join(dir, "absent"), Options{}); err == nil || !strings.HasPrefix(err.Error(), "models:") {
		t.Errorf("missing directory: %v", err)
	}
}

// TestReadersSeeWholeSnapshots reloads while readers score: every reader
// sees a served version that is fully loaded, never a half-built model.
func TestReadersSeeWholeSnapshots(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "lr/config.yaml"), lrConfig)
	write(t, filepath.Join(dir, "lr/1/model.json"), weights("1"))
	r, _ := open(t, dir)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				m, ok := r.Snapshot().Get("lr")
				if !ok {
					bad.Add(1)
					continue
				}
				v, ok := m.Version(0)
				out := make([]float64, 1)
				if !ok || v.Scorer.Score(context.Background(), []float64{1}, 1, out) != nil || out[0] != model.Sigmoid(float64(v.Number)) {
					bad.Add(1)
				}
			}
		}()
	}
	for v := 2; v <= 20; v++ {
		write(t, filepath.Join(dir, "lr", strconv.Itoa(v), "model.json"), weights(strconv.Itoa(v)))
		if err := r.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d reads saw an incomplete model", bad.Load())
	}
	if v, _ := score(t, r.Snapshot()); v != 20 {
		t.Errorf("serving v%d, want v20", v)
	}
}

func TestWatchPicksUpNewVersions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "lr/config.yaml"), lrConfig)
	write(t, filepath.Join(dir, "lr/1/model.json"), weights("1"))
	r, _ := open(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	write(t, filepath.Join(dir, "lr/2/model.json"), weights("2"))
	testutil.Eventually(t, 5*time.Second, "watch loads v2", func() error {
		m, _ := r.Snapshot().Get("lr")
		if m.Latest != 2 {
			return os.ErrNotExist
		}
		return nil
	})
}
