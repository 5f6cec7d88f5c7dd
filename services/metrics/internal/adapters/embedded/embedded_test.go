package embedded_test

import (
	"context"
	"testing"

	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/embedded"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
	"github.com/tributary-ml/tributary/services/metrics/internal/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, rows []core.Row) core.RowReader {
		s := embedded.New()
		for _, r := range rows {
			if err := s.Upsert(context.Background(), []core.Row{r}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	})
}
