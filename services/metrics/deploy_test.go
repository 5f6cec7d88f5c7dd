package metrics_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
)

const deployDir = "../../deploy"

type target struct {
	Datasource struct{ Type string }
	TableName  string
	PinotQL    string `json:"pinotQlCode"`
	Expr       string
}

type panel struct {
	Title      string
	Datasource *struct{ Type string }
	Targets    []target
	Panels     []panel // rows nest panels
}

// panels returns every dashboard's panels by dashboard file.
func panels(t *testing.T) map[string][]panel {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under %s/grafana/dashboards (%v)", deployDir, err)
	}
	out := map[string][]panel{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Panels []panel }
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var flat []panel
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				flat = append(flat, p)
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		out[filepath.Base(f)] = flat
	}
	return out
}

func pinotColumns(t *testing.T) (string, map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "pinot", "model_minute_schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		SchemaName string                  `json:"schemaName"`
		Dims       []struct{ Name string } `json:"dimensionFieldSpecs"`
		Metrics    []struct{ Name string } `json:"metricFieldSpecs"`
		Times      []struct{ Name string } `json:"dateTimeFieldSpecs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	cols := map[string]bool{}
	for _, g := range [][]struct{ Name string }{s.Dims, s.Metrics, s.Times} {
		for _, c := range g {
			cols[c.Name] = true
		}
	}
	return s.SchemaName, cols
}

var quotedIdent = regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_]*)"`)

// TestGrafanaPinotPanelsUseSchemaColumns: every Pinot panel names the
// model_minute table and only columns of its schema.
func TestGrafanaPinotPanelsUseSchemaColumns(t *testing.T) {
	table, cols := pinotColumns(t)
	n := 0
	for file, ps := range panels(t) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Datasource.Type != "startree-pinot-datasource" && (p.Datasource == nil || p.Datasource.Type != "startree-pinot-datasource") {
					continue
				}
				n++
				if tg.TableName != table {
					t.Errorf("%s %q: table %q, want %q", file, p.Title, tg.TableName, table)
				}
				idents := quotedIdent.FindAllStringSubmatch(tg.PinotQL, -1)
				if len(idents) == 0 {
					t.Errorf("%s %q: no quoted column in %q", file, p.Title, tg.PinotQL)
				}
				for _, m := range idents {
					if !cols[m[1]] {
						t.Errorf("%s %q: column %q is not in the Pinot schema", file, p.Title, m[1])
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no Pinot panels found")
	}
}

var metricName = regexp.MustCompile(`\btributary_[a-z0-9_]+`)

// TestGrafanaPrometheusPanelsUseExportedMetrics: every metric a Prometheus
// panel queries is in deploy/grafana/metric_names.txt, and those the panel
// reads from the metrics service's job are exported by a running metrics
// service.
func TestGrafanaPrometheusPanelsUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "metric_names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, l := range strings.Fields(string(b)) {
		listed[l] = true
	}

	brokers := testutil.Kafka(t, 1)
	svc := start(t, brokers, "")
	client := dial(t, svc.svc.GRPCAddr())
	ctx := testutil.Context(t, 30*time.Second)
	// One gRPC call so the request counter has a series.
	if _, err := client.ListModels(ctx, &metricsv1.ListModelsRequest{}); err != nil {
		t.Fatal(err)
	}
	var exported string
	testutil.Eventually(t, 20*time.Second, "the consumer running (its lag gauge exported)", func() error {
		exported = scrape(t, svc.svc.AdminAddr())
		if !strings.Contains(exported, "tributary_kafka_consumer_lag") {
			return fmt.Errorf("no tributary_kafka_consumer_lag yet")
		}
		return nil
	})
	fromMetrics := regexp.MustCompile(`job\s*(=\s*"metrics"|=~\s*"[^"]*\bmetrics\b[^"]*")`)
	n := 0
	for file, ps := range panels(t) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				for _, name := range metricName.FindAllString(tg.Expr, -1) {
					n++
					if !listed[name] {
						t.Errorf("%s %q: %s is not in metric_names.txt", file, p.Title, name)
					}
					if fromMetrics.MatchString(tg.Expr) && !regexp.MustCompile(`(?m)^`+name+`[{ ]`).MatchString(exported) {
						t.Errorf("%s %q: reads %s from job metrics, which does not export it", file, p.Title, name)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no Prometheus panel queries a tributary metric")
	}
}
