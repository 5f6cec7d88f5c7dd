package metrics_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/testutil"
	metricsv1 "github.com/tributary-ml/tributary/proto/gen/go/tributary/metrics/v1"
	"github.com/tributary-ml/tributary/services/metrics"
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

var (
	metricName = regexp.MustCompile(`\btributary_[a-z0-9_]+`)
	jobExact   = regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`)
	jobRegex   = regexp.MustCompile(`\bjob\s*=~\s*"([^"]*)"`)
)

// readMetricNames reads deploy/grafana/metric_names.txt: one exported
// metric per line, then the services exporting it ("*": any service).
func readMetricNames(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "metric_names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for n, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Errorf("metric_names.txt:%d: %q is not \"<metric> <service,...>\"", n+1, l)
			continue
		}
		out[f[0]] = strings.Split(f[1], ",")
	}
	return out
}

// TestMetricNamesListIsWhatTheCodeExports: metric_names.txt lists exactly
// the metrics the services' code exports, with the services exporting them.
func TestMetricNamesListIsWhatTheCodeExports(t *testing.T) {
	exported := exportedNames(codeInstruments(t))
	listed := readMetricNames(t)
	for name, jobs := range exported {
		if got := listed[name]; strings.Join(got, ",") != strings.Join(jobs, ",") {
			t.Errorf("metric_names.txt: %s %s, want %s %s", name, strings.Join(got, ","), name, strings.Join(jobs, ","))
		}
	}
	for name := range listed {
		if _, ok := exported[name]; !ok {
			t.Errorf("metric_names.txt lists %s, which no service exports", name)
		}
	}
}

// TestExportedNamesMatchARunningService: the running metrics service
// exports, under the names codeInstruments derives, every instrument its
// own code and libs/service create; so the exporter's naming (counters'
// _total, histograms' _bucket) the panel check relies on is the real one.
func TestExportedNamesMatchARunningService(t *testing.T) {
	brokers := testutil.Kafka(t, 1)
	ctx := testutil.Context(t, 30*time.Second)
	preds, labels := workload(0, 20)
	produce(t, ctx, brokers, preds, labels)
	svc := start(t, brokers, "", func(c *metrics.Config) { c.AlertP99Ms = "0.001" })
	client := dial(t, svc.svc.GRPCAddr())
	// One gRPC call so the request counter and histogram have series.
	if _, err := client.ListModels(ctx, &metricsv1.ListModelsRequest{}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, in := range codeInstruments(t) {
		if in.job == "metrics" || strings.Contains(filepath.ToSlash(in.pos), "libs/service/") {
			want = append(want, in.exposition()...)
		}
	}
	if len(want) < 10 {
		t.Fatalf("only %d names from the metrics service's and libs/service's code: %v", len(want), want)
	}
	testutil.Eventually(t, 20*time.Second, "every instrument of the metrics service on /metrics", func() error {
		body := scrape(t, svc.svc.AdminAddr())
		var missing []string
		for _, n := range want {
			if !regexp.MustCompile(`(?m)^` + n + `[{ ]`).MatchString(body) {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not exported (yet): %v", missing)
		}
		return nil
	})
}

// TestGrafanaPrometheusPanelsUseExportedMetrics: every metric a Prometheus
// panel queries is exported by a service's code, and by every service its
// job matcher selects.
func TestGrafanaPrometheusPanelsUseExportedMetrics(t *testing.T) {
	exported := exportedNames(codeInstruments(t))
	n := 0
	for file, ps := range panels(t) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				var jobs []string
				for _, m := range jobExact.FindAllStringSubmatch(tg.Expr, -1) {
					jobs = append(jobs, m[1])
				}
				for _, m := range jobRegex.FindAllStringSubmatch(tg.Expr, -1) {
					jobs = append(jobs, strings.Split(m[1], "|")...)
				}
				names := metricName.FindAllString(tg.Expr, -1)
				if len(names) == 0 {
					t.Errorf("%s %q: %q queries no tributary metric", file, p.Title, tg.Expr)
				}
				for _, name := range names {
					n++
					by := exported[name]
					if len(by) == 0 {
						t.Errorf("%s %q: no service exports %s", file, p.Title, name)
						continue
					}
					if len(jobs) == 0 {
						t.Errorf("%s %q: %s without a job matcher", file, p.Title, name)
					}
					for _, j := range jobs {
						if !slices.Contains(by, j) && !slices.Contains(by, "*") {
							t.Errorf("%s %q: reads %s from job %s, but only %v export it", file, p.Title, name, j, by)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no Prometheus panel queries a tributary metric")
	}
}

// TestModelHealthDashboardCoversTheIssue: the model health dashboard has
// traffic, latency, score distribution, drift per feature and label-based
// quality, by version and variant.
func TestModelHealthDashboardCoversTheIssue(t *testing.T) {
	ps := panels(t)["model-health.json"]
	queried := map[string]bool{}
	for _, p := range ps {
		for _, tg := range p.Targets {
			if tg.PinotQL == "" {
				continue
			}
			if !strings.Contains(tg.PinotQL, `"version"`) || !strings.Contains(tg.PinotQL, `"variant"`) {
				t.Errorf("panel %q does not split by version and variant: %s", p.Title, tg.PinotQL)
			}
			for _, m := range quotedIdent.FindAllStringSubmatch(tg.PinotQL, -1) {
				queried[m[1]] = true
			}
		}
	}
	for what, cols := range map[string][]string{
		"traffic":                {"requests", "errors"},
		"latency":                {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"},
		"score distribution":     {"score_mean", "score_histogram"},
		"drift":                  {"score_psi", "score_js", "feature_psi", "feature_js", "feature_default_rate"},
		"quality as labels land": {"labeled", "accuracy", "precision", "recall", "auc", "log_loss", "calibration_error"},
	} {
		for _, c := range cols {
			if !queried[c] {
				t.Errorf("model health dashboard: %s lacks a panel on %s", what, c)
			}
		}
	}
}
