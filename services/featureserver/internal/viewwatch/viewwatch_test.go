package viewwatch_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/featureserver/internal/viewwatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const v1 = `name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks}
features:
  - {name: count_1h, aggregation: count, window: 1h}
`

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckReloadsOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "clicks.yaml", v1)
	w, cat, err := viewwatch.Load(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := w.Check(); changed || err != nil {
		t.Fatalf("unchanged files: changed=%v err=%v", changed, err)
	}
	before := cat.Views()

	// A new file adds a view.
	write(t, dir, "orders.yaml", strings.ReplaceAll(v1, "clicks", "orders"))
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("new file: changed=%v err=%v", changed, err)
	}
	if _, ok := cat.Views().Get("orders"); !ok || cat.Views() == before {
		t.Fatal("orders view not served after reload")
	}

	// A broken edit keeps the served views and is reported once.
	write(t, dir, "orders.yaml", "name: orders\n")
	changed, err := w.Check()
	if changed || err == nil || !strings.Contains(err.Error(), "orders.yaml") {
		t.Fatalf("broken file: changed=%v err=%v, want an error naming orders.yaml", changed, err)
	}
	if _, ok := cat.Views().Get("orders"); !ok {
		t.Fatal("previous views were dropped on a broken edit")
	}
	if w.Err() == nil {
		t.Fatal("Err() is nil while the files are broken")
	}
	if changed, err := w.Check(); changed || err != nil {
		t.Fatalf("same broken content again: changed=%v err=%v, want no new report", changed, err)
	}

	// Deleting the broken file recovers.
	if err := os.Remove(filepath.Join(dir, "orders.yaml")); err != nil {
		t.Fatal(err)
	}
	if changed, err := w.Check(); !changed || err != nil {
		t.Fatalf("after fix: changed=%v err=%v", changed, err)
	}
	if _, ok := cat.Views().Get("orders"); ok || w.Err() != nil {
		t.Fatalf("after removing orders.yaml: orders still served or error %v", w.Err())
	}
}

func TestRunPicksUpEdits(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "clicks.yaml", v1)
	w, cat, err := viewwatch.Load(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, 10*time.Millisecond) }()
	write(t, dir, "clicks.yaml", v1+"  - {name: count_1d, aggregation: count, window: 1d}\n")
	testutil.Eventually(t, 10*time.Second, "the edit to be served", func() error {
		v, _ := cat.Views().Get("clicks")
		if _, ok := v.Feature("count_1d"); !ok {
			return os.ErrNotExist
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefusesInvalidViews(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "bad.yaml", "name: Bad\n")
	if _, _, err := viewwatch.Load(dir, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("err = %v, want it to name bad.yaml", err)
	}
}
