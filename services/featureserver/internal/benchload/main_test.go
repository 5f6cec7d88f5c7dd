package main

import (
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles"
)

// TestDatasetTilesAgreeWithExpectedCounts checks the loader against
// itself: the counts it waits for are what its tiles merge to, at the end
// of the history and later (windows decay), and no tile it produces is
// already expired.
func TestDatasetTilesAgreeWithExpectedCounts(t *testing.T) {
	views, err := featurespec.LoadDir("../../../../examples/bench/features")
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 1 || len(views[0].Features) != 50 {
		t.Fatalf("bench view: %d views, want one of 50 features", len(views))
	}
	v := views[0]
	d := dataset{view: v, endMs: 1_700_000_123_456, everyMs: (10 * time.Minute).Milliseconds(), events: int(31 * 24 * time.Hour / (10 * time.Minute))}
	ts := d.tiles(3)
	for _, tl := range ts {
		if tl.ResolutionMs > 0 && tl.StartMs+tiles.Retention(v, time.Duration(tl.ResolutionMs)*time.Millisecond).Milliseconds() <= d.endMs {
			t.Fatalf("tile %s is expired at the end of the history", tl.Key())
		}
	}
	for _, ahead := range []int64{0, 299_999, 3_600_000, 86_400_000} {
		now := d.endMs + ahead
		for _, f := range v.Features {
			if f.Aggregation != featurespec.AggCount {
				continue
			}
			ir, _ := tiles.Window(ts, f, now)
			if got, want := float64(ir.Count), d.expectedCount(f, now); got != want {
				t.Fatalf("+%dms %s: tiles count %v, expected %v", ahead, f.Name, got, want)
			}
			if ahead == 0 && ir.Count == 0 {
				t.Fatalf("%s: no events in the window at the end of the history", f.Name)
			}
		}
	}
}
