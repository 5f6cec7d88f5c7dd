package metrics_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the monorepo root, from this package's directory.
const repoRoot = "../.."

// instrument is an OTel instrument some service's code creates.
type instrument struct {
	name string
	kind string // counter, gauge or histogram
	// job is the service directory under services/ ("*" for libs/, whose
	// instruments any service may export).
	job string
	pos string
}

// exposition returns the names the Prometheus exporter gives the
// instrument: counters get _total, histograms _bucket, _sum and _count.
func (i instrument) exposition() []string {
	switch i.kind {
	case "counter":
		return []string{strings.TrimSuffix(i.name, "_total") + "_total"}
	case "histogram":
		return []string{i.name + "_bucket", i.name + "_sum", i.name + "_count"}
	}
	return []string{i.name}
}

// instrumentKinds maps the metric.Meter methods to the Prometheus kind of
// what they create.
var instrumentKinds = map[string]string{
	"Int64Counter": "counter", "Float64Counter": "counter",
	"Int64ObservableCounter": "counter", "Float64ObservableCounter": "counter",
	"Int64UpDownCounter": "gauge", "Float64UpDownCounter": "gauge",
	"Int64ObservableUpDownCounter": "gauge", "Float64ObservableUpDownCounter": "gauge",
	"Int64Gauge": "gauge", "Float64Gauge": "gauge",
	"Int64ObservableGauge": "gauge", "Float64ObservableGauge": "gauge",
	"Int64Histogram": "histogram", "Float64Histogram": "histogram",
}

// codeInstruments parses every non-test Go file under services/ and libs/
// and returns the instruments they create. A name must be a string
// literal, a constant, a parameter of a local helper called with literals,
// or the key of a range over a map literal; anything else fails the test
// so that a new way of naming instruments is not silently missed.
func codeInstruments(t *testing.T) []instrument {
	t.Helper()
	var out []instrument
	fset := token.NewFileSet()
	for _, top := range []string{"services", "libs"} {
		root := filepath.Join(repoRoot, top)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			job := "*"
			if top == "services" {
				rel, _ := filepath.Rel(root, path)
				job = strings.Split(filepath.ToSlash(rel), "/")[0]
			}
			out = append(out, fileInstruments(t, fset, f, job)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatal("found no instruments in the code")
	}
	return out
}

func fileInstruments(t *testing.T, fset *token.FileSet, f *ast.File, job string) []instrument {
	// Local helpers: a variable bound to a func literal, and its calls.
	helpers := map[*ast.Object]*ast.FuncLit{}
	var calls []*ast.CallExpr
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, rhs := range n.Rhs {
				if fl, ok := rhs.(*ast.FuncLit); ok && i < len(n.Lhs) {
					if id, ok := n.Lhs[i].(*ast.Ident); ok && id.Obj != nil {
						helpers[id.Obj] = fl
					}
				}
			}
		case *ast.CallExpr:
			calls = append(calls, n)
		}
		return true
	})
	var out []instrument
	for _, c := range calls {
		sel, ok := c.Fun.(*ast.SelectorExpr)
		if !ok || len(c.Args) == 0 {
			continue
		}
		kind, ok := instrumentKinds[sel.Sel.Name]
		if !ok {
			continue
		}
		pos := fset.Position(c.Pos()).String()
		for _, opt := range c.Args[1:] {
			if oc, ok := opt.(*ast.CallExpr); ok {
				if s, ok := oc.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "WithUnit" {
					t.Errorf("%s: instrument with a unit: the exporter adds a unit suffix this test does not model", pos)
				}
			}
		}
		names := resolveNames(c.Args[0], helpers, calls)
		if len(names) == 0 {
			t.Errorf("%s: cannot tell the instrument's name from the code", pos)
		}
		for _, n := range names {
			out = append(out, instrument{name: n, kind: kind, job: job, pos: pos})
		}
	}
	return out
}

func literal(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

func resolveNames(e ast.Expr, helpers map[*ast.Object]*ast.FuncLit, calls []*ast.CallExpr) []string {
	if s, ok := literal(e); ok {
		return []string{s}
	}
	id, ok := e.(*ast.Ident)
	if !ok || id.Obj == nil {
		return nil
	}
	switch d := id.Obj.Decl.(type) {
	case *ast.ValueSpec: // a constant
		for i, n := range d.Names {
			if n.Obj == id.Obj && i < len(d.Values) {
				if s, ok := literal(d.Values[i]); ok {
					return []string{s}
				}
			}
		}
	case *ast.Field: // a parameter of a local helper: the literals it is called with
		for helper, fl := range helpers {
			idx := 0
			for _, field := range fl.Type.Params.List {
				for _, n := range field.Names {
					if n.Obj == id.Obj {
						var out []string
						for _, c := range calls {
							if fid, ok := c.Fun.(*ast.Ident); ok && fid.Obj == helper && idx < len(c.Args) {
								if s, ok := literal(c.Args[idx]); ok {
									out = append(out, s)
								} else {
									return nil
								}
							}
						}
						return out
					}
					idx++
				}
			}
		}
	case *ast.AssignStmt: // for name := range <map literal>
		if len(d.Rhs) != 1 || len(d.Lhs) == 0 {
			return nil
		}
		if k, ok := d.Lhs[0].(*ast.Ident); !ok || k.Obj != id.Obj {
			return nil
		}
		u, ok := d.Rhs[0].(*ast.UnaryExpr)
		if !ok || u.Op != token.RANGE {
			return nil
		}
		return mapKeys(u.X)
	}
	return nil
}

func mapKeys(e ast.Expr) []string {
	if id, ok := e.(*ast.Ident); ok && id.Obj != nil {
		if as, ok := id.Obj.Decl.(*ast.AssignStmt); ok {
			for i, l := range as.Lhs {
				if li, ok := l.(*ast.Ident); ok && li.Obj == id.Obj && i < len(as.Rhs) {
					return mapKeys(as.Rhs[i])
				}
			}
		}
		return nil
	}
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	var out []string
	for _, el := range cl.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			return nil
		}
		s, ok := literal(kv.Key)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

// exportedNames maps each exposition name to the services exporting it.
func exportedNames(ins []instrument) map[string][]string {
	out := map[string][]string{}
	for _, i := range ins {
		for _, n := range i.exposition() {
			jobs := out[n]
			found := false
			for _, j := range jobs {
				found = found || j == i.job
			}
			if !found {
				out[n] = append(jobs, i.job)
				sort.Strings(out[n])
			}
		}
	}
	return out
}

// TestCodeInstrumentsFound: the parser finds what the metrics service
// itself registers in every way it names instruments (a map of counters,
// literals, the alerter's counter) and the helper-declared counters of the
// featurizer, so an empty or partial parse cannot pass the panel checks.
func TestCodeInstrumentsFound(t *testing.T) {
	got := exportedNames(codeInstruments(t))
	for _, want := range []string{
		"tributary_metrics_predictions_total", "tributary_metrics_pending_joins", "tributary_metrics_alerts_total",
		"tributary_featurizer_events_total", "tributary_ingest_rows_total", "tributary_ingest_replication_lag_seconds",
		"tributary_featureserver_freshness_seconds_bucket", "tributary_modelserver_predictions_total",
		"tributary_grpc_server_duration_seconds_bucket",
	} {
		if len(got[want]) == 0 {
			t.Errorf("the parse of the services' code does not find %s", want)
		}
	}
}
