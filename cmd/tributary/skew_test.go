package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	"github.com/tributary-ml/tributary/services/offline"
)

// TestDemoServesWhatOfflineComputes runs the demo workload for a while,
// lets the archive catch up, and checks with the skew report that every
// feature value the model was served equals the value the offline engine
// computes from the archive at the prediction's time (values still in
// flight are allowed, and counted apart).
func TestDemoServesWhatOfflineComputes(t *testing.T) {
	ctx := testutil.Context(t, 4*time.Minute)
	s := startDemoStack(t, ctx, "skew")
	s.runWorkload(t, ctx, 150, 0)
	st := s.Stack

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
