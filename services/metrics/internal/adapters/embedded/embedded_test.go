package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/embedded"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
	"github.com/tributary-ml/tributary/services/metrics/internal/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, rows []core.Row) core.RowReader {
		s := embedded.New(0)
		for _, r := range rows {
			if err := s.Upsert(context.Background(), []core.Row{r}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	})
}

func TestRetention(t *testing.T) {
	s := embedded.New(time.Hour)
	ctx := context.Background()
	row := func(minute int64) core.Row {
		return core.Row{Key: core.Key{ModelKey: core.ModelKey{Model: "m"}, Minute: minute * core.MinuteMs}}
	}
	for m := int64(0); m < 180; m++ {
		if err := s.Upsert(ctx, []core.Row{row(m)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n != 61 {
		t.Fatalf("%d rows kept, want the newest 61 minutes", n)
	}
	if err := s.Upsert(ctx, []core.Row{row(10)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Minutes(ctx, core.Query{Model: "m", FromMs: 0, ToMs: 200 * core.MinuteMs})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 61 || got[0].Minute != 119*core.MinuteMs {
		t.Fatalf("%d rows from minute %d, want 61 from 119", len(got), got[0].Minute/core.MinuteMs)
	}
}
