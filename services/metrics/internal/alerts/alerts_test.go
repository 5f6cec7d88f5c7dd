package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
)

func row(model string, minute int64, requests int64, scorePSI, p99 float64, feat map[string]float64) core.Row {
	return core.Row{
		Key:     core.Key{ModelKey: core.ModelKey{Model: model, Version: "v1", Variant: "a"}, Minute: minute},
		Metrics: core.Metrics{Requests: requests, ScorePSI: scorePSI, LatencyP99Ms: p99, FeaturePSI: feat},
	}
}

func TestParseP99(t *testing.T) {
	got, err := ParseP99("fraud=20, *=100")
	if err != nil || got["fraud"] != 20 || got["*"] != 100 {
		t.Fatalf("ParseP99 = %v, %v", got, err)
	}
	got, err = ParseP99("50")
	if err != nil || got["*"] != 50 {
		t.Fatalf("ParseP99(50) = %v, %v", got, err)
	}
	for _, bad := range []string{"x", "fraud=", "=5", "fraud=-1"} {
		if _, err := ParseP99(bad); err == nil {
			t.Errorf("ParseP99(%q) accepted", bad)
		}
	}
}

func TestCheckRaisesOncePerMinuteAndPostsWebhook(t *testing.T) {
	var mu sync.Mutex
	var got []Alert
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		got = append(got, a)
		mu.Unlock()
	}))
	defer srv.Close()
	p99, _ := ParseP99("fraud=20,*=100")
	a, err := New(Config{PSI: 0.25, MinRequests: 100, P99Ms: p99, Webhook: srv.URL}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	m0 := int64(1_793_527_200_000)
	rows := []core.Row{
		row("fraud", m0, 500, 0.3, 25, map[string]float64{"amount": 0.5, "age": 0.1}), // score, amount, p99
		row("churn", m0, 500, 0.1, 25, nil),                                           // under churn's * threshold
		row("small", m0, 10, 0.9, 1, map[string]float64{"x": 3}),                      // too few for drift
	}
	raised := a.Check(ctx, rows)
	kinds := map[string]int{}
	for _, al := range raised {
		kinds[al.Kind+"/"+al.Model+"/"+al.Feature]++
	}
	want := map[string]int{ScoreDrift + "/fraud/": 1, FeatureDrift + "/fraud/amount": 1, LatencyP99 + "/fraud/": 1}
	if len(kinds) != len(want) {
		t.Fatalf("raised %v, want %v", kinds, want)
	}
	for k := range want {
		if kinds[k] != 1 {
			t.Fatalf("raised %v, want %v", kinds, want)
		}
	}
	// Re-published row of the same minute: nothing new. Next minute: again.
	if again := a.Check(ctx, rows[:1]); len(again) != 0 {
		t.Fatalf("re-published minute raised %v", again)
	}
	if next := a.Check(ctx, []core.Row{row("fraud", m0+core.MinuteMs, 500, 0.3, 1, nil)}); len(next) != 1 || next[0].Kind != ScoreDrift {
		t.Fatalf("next minute raised %v, want one score drift", next)
	}
	testutil.Eventually(t, 10*time.Second, "4 webhook posts", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 4 {
			return fmt.Errorf("%d posts", len(got))
		}
		return nil
	})
	cancel()
	a.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got[0].Threshold != 0.25 || got[0].Model != "fraud" || got[0].Minute.UnixMilli() != m0 {
		t.Fatalf("first post %+v", got[0])
	}
}

// TestSeedDoesNotRefireRestoredMinute: after a restart the alerter is
// seeded with the restored rows; a re-publication of their minute raises
// only conditions the restored row did not already call for.
func TestSeedDoesNotRefireRestoredMinute(t *testing.T) {
	p99, _ := ParseP99("50")
	cfg := Config{PSI: 0.25, MinRequests: 100, P99Ms: p99}
	m0 := int64(1_793_527_200_000)
	published := row("fraud", m0, 500, 0.3, 10, map[string]float64{"amount": 0.5})

	first, err := New(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(first.Check(context.Background(), []core.Row{published})); n != 2 {
		t.Fatalf("before the restart: %d alerts, want score and amount drift", n)
	}

	a, err := New(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Seed([]core.Row{published})
	// The same minute with more predictions, now also slow.
	again := row("fraud", m0, 700, 0.35, 80, map[string]float64{"amount": 0.6})
	raised := a.Check(context.Background(), []core.Row{again})
	if len(raised) != 1 || raised[0].Kind != LatencyP99 {
		t.Fatalf("re-published restored minute raised %v, want only the new p99 alert", raised)
	}
	if next := a.Check(context.Background(), []core.Row{row("fraud", m0+core.MinuteMs, 500, 0.3, 1, nil)}); len(next) != 1 || next[0].Kind != ScoreDrift {
		t.Fatalf("next minute raised %v, want score drift", next)
	}
}

// TestRunSendsQueuedAlertsOnClose: alerts raised after the context ended
// (the consumer's last flush) are still posted before Run returns.
func TestRunSendsQueuedAlertsOnClose(t *testing.T) {
	var mu sync.Mutex
	posts := 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		posts++
		mu.Unlock()
	}))
	defer srv.Close()
	a, err := New(Config{PSI: 0.25, Webhook: srv.URL}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	cancel()
	m0 := int64(1_793_527_200_000)
	if n := len(a.Check(context.Background(), []core.Row{row("fraud", m0, 500, 0.3, 1, map[string]float64{"a": 1, "b": 1})})); n != 3 {
		t.Fatalf("%d alerts raised, want 3", n)
	}
	a.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if posts != 3 {
		t.Fatalf("%d posts when Run returned, want 3", posts)
	}
}
