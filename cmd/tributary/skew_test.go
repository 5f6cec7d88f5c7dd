package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/demo"
	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline"
)

// TestDemoServesWhatOfflineComputes runs the demo workload for a while,
// lets the archive catch up, and checks with the skew report that every
// feature value the model was served equals the value the offline engine
// computes from the archive at the prediction's time (values still in
// flight are allowed, and counted apart).
func TestDemoServesWhatOfflineComputes(t *testing.T) {
	dsn := testutil.PostgresDSN(t)
	ctx := testutil.Context(t, 4*time.Minute)
	dbDSN, _ := exampleDB(t, ctx, dsn)
	cfg := exampleStack(t, dbDSN, "skew")
	cfg.ArchiveRollInterval = time.Second
	st := runStack(t, ctx, cfg, dsn)
	// The workload until 150 predictions were made.
	w := demo.NewWorkload(demo.WorkloadConfig{
		PostgresDSN: dbDSN, Brokers: []string{st.Kafka.Addr()},
		ModelserverAddr: st.Modelserver.GRPCAddr(), FeatureserverAddr: st.Featureserver.GRPCAddr(),
		SessionsPerSecond: 20, Seed: 7, Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	wctx, wstop := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	testutil.Eventually(t, 2*time.Minute, "150 demo predictions", func() error {
		if n := w.Stats.Predictions.Load(); n < 150 {
			return fmt.Errorf("%d predictions", n)
		}
		return nil
	})
	wstop()
	if err := <-wdone; err != nil && ctx.Err() == nil {
		t.Logf("workload: %v", err)
	}

	job := offline.SkewJob{
		Model: "fraud_lr", FeaturesDir: filepath.Join(exampleDir, "features"), ModelsDir: filepath.Join(exampleDir, "models"),
		Archive: st.OfflineURL, KafkaBrokers: []string{st.Kafka.Addr()}, Examples: 3,
	}
	var rep *offline.SkewReport
	testutil.Eventually(t, time.Minute, "the archive holds every prediction and the records before it", func() error {
		var err error
		if rep, err = offline.RunSkew(ctx, job); err != nil {
			return err
		}
		if rep.Later > 0 || rep.Predictions < 150 {
			return fmt.Errorf("%d predictions checked, %d wait for the archive", rep.Predictions, rep.Later)
		}
		return nil
	})
	t.Logf("skew report:\n%s", rep)
	for _, f := range rep.Features {
		if f.Compared == 0 {
			t.Errorf("%s: no served value compared", f.Ref)
		}
	}
	if n := rep.Differ(); n > 0 {
		t.Errorf("%d served feature values differ from the offline values:\n%s", n, rep)
	}
}
