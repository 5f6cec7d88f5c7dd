package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/demo"
	"github.com/tributary-ml/tributary/cmd/tributary/internal/stack"
	"github.com/tributary-ml/tributary/libs/testutil"
)

// demoStack is the whole stack on a fresh database with the fraud
// example's schema, archiving with a short roll interval, running until
// the test ends.
type demoStack struct {
	*stack.Stack
	// DB is a connection to the stack's database.
	DB      *pgx.Conn
	DSN     string
	Example string
}

func startDemoStack(t *testing.T, ctx context.Context, name string) *demoStack {
	t.Helper()
	dsn := testutil.PostgresDSN(t)
	dbDSN, db := exampleDB(t, ctx, dsn)
	cfg := exampleStack(t, dbDSN, name)
	cfg.ArchiveRollInterval = time.Second
	st := runStack(t, ctx, cfg, dsn)
	return &demoStack{Stack: st, DB: db, DSN: dbDSN, Example: exampleDir}
}

// runWorkload runs the demo workload until it made n predictions.
func (s *demoStack) runWorkload(t *testing.T, ctx context.Context, n int64, labelDelay time.Duration) *demo.Workload {
	t.Helper()
	w := demo.NewWorkload(demo.WorkloadConfig{
		PostgresDSN: s.DSN, Brokers: []string{s.Kafka.Addr()},
		ModelserverAddr: s.Modelserver.GRPCAddr(), FeatureserverAddr: s.Featureserver.GRPCAddr(),
		SessionsPerSecond: 20, Seed: 7, LabelDelay: labelDelay,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	wctx, wstop := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	testutil.Eventually(t, 2*time.Minute, fmt.Sprintf("%d demo predictions", n), func() error {
		if got := w.Stats.Predictions.Load(); got < n {
			return fmt.Errorf("%d predictions", got)
		}
		return nil
	})
	wstop()
	if err := <-wdone; err != nil && ctx.Err() == nil {
		t.Logf("workload: %v", err)
	}
	return w
}

// TestDemoTrainingSetFromPredictions runs the demo workload (labels 1 s
// after each prediction, into public.labels, archived through CDC), then
// builds a training set from the archived prediction log with `tributary
// training-set --from-predictions`: one row per prediction made, and
// exactly the labels written in the table joined to their predictions.
func TestDemoTrainingSetFromPredictions(t *testing.T) {
	ctx := testutil.Context(t, 4*time.Minute)
	s := startDemoStack(t, ctx, "predspine")
	w := s.runWorkload(t, ctx, 100, time.Second)
	made := w.Stats.Predictions.Load()

	labels := map[string]string{}
	rows, err := s.DB.Query(ctx, "SELECT prediction_id, is_fraud FROM labels")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var fraud bool
		if err := rows.Scan(&id, &fraud); err != nil {
			t.Fatal(err)
		}
		labels[id] = map[bool]string{true: "1", false: "0"}[fraud]
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(labels) == 0 {
		t.Fatal("the workload wrote no label")
	}

	out := filepath.Join(t.TempDir(), "fraud_lr.csv")
	args := []string{"--from-predictions", "fraud_lr", "--since", "1h", "--offline", s.OfflineURL,
		"--features-dir", filepath.Join(s.Example, "features"), "--features", "user_clicks:click_count_10m", "--out", out}
	var set []map[string]string
	testutil.Eventually(t, time.Minute, fmt.Sprintf("a training set of the %d predictions with the %d labels written", made, len(labels)), func() error {
		var stdout, stderr bytes.Buffer
		if code := trainingSetCommand(args, &stdout, &stderr); code != 0 {
			return fmt.Errorf("exit %d: %s", code, stderr.String())
		}
		var err error
		if set, err = readTrainingSet(out); err != nil {
			return err
		}
		labeled := 0
		for _, r := range set {
			if r["label"] != "" {
				labeled++
			}
		}
		if len(set) != int(made) || labeled != len(labels) {
			return fmt.Errorf("%d rows, %d labeled (%s)", len(set), labeled, strings.TrimSpace(stdout.String()))
		}
		return nil
	})
	t.Logf("%d predictions made, %d rows, %d labels in public.labels, all joined", made, len(set), len(labels))
	for _, r := range set {
		id := r["prediction_id"]
		if want := labels[id]; r["label"] != want {
			t.Errorf("%s: label %q, want %q (public.labels)", id, r["label"], want)
		}
		if r["user_id"] == "" || r["served__amount"] == "" || r["output__score"] == "" || r["user_clicks__click_count_10m__status"] == "" {
			t.Errorf("%s: missing entity key, served input, output or extra feature: %v", id, r)
		}
		if r["role"] != "served" && r["role"] != "canary" {
			t.Errorf("%s: role %q", id, r["role"])
		}
	}
}

func readTrainingSet(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, c := range recs[0] {
			m[c] = r[i]
		}
		out = append(out, m)
	}
	return out, nil
}
