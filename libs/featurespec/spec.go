// Package featurespec reads and validates feature views: YAML files that
// declare an entity, a source topic and the features computed from it. The
// featurizer computes them and the featureserver serves them, both from the
// same files.
//
// Aggregations:
//
//	latest           the newest value by event time (no window; never expires)
//	count            events in the window (column optional)
//	sum, avg, min, max, stddev
//	                 over the numeric values of column (Debezium numeric strings count)
//	first, last      the oldest / newest value in the window by event time
//	approx_distinct  distinct values of column: exact up to 128 per tile, then a
//	                 HyperLogLog (2^11 registers, ~2.3% standard error)
//	p50, p90, p95, p99
//	                 quantiles of column's numeric values, within 1% relative
//	                 error (a mergeable log-bucket sketch)
//
// CDC updates and deletes retract the old row image from count, sum, avg,
// stddev and the quantiles (reversible). min, max, first, last and
// approx_distinct cannot forget a value: a retracted value keeps counting
// until its tile expires (window + one resolution). Latest values keep the
// newest image; a delete does not clear them.
//
// A source may carry a filter, conditions joined by "and", each
// "<column> <op> <literal>" with op one of == != < <= > >= and a literal
// that is a number, a quoted string, true, false or null; for example
// `amount > 0 and currency == 'EUR'`. Rows failing it are ignored (for CDC,
// the after image decides whether it is added and the before image whether
// it is retracted).
package featurespec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Aggregations a feature may declare. Latest is a latest value, not windowed.
const (
	AggLatest = "latest"
	AggCount  = "count"
	AggSum    = "sum"
	AggAvg    = "avg"
	AggMin    = "min"
	AggMax    = "max"
	AggStddev = "stddev"
	AggFirst  = "first"
	AggLast   = "last"
	// AggApproxDistinct counts distinct values with a mergeable sketch.
	AggApproxDistinct = "approx_distinct"
	AggP50            = "p50"
	AggP90            = "p90"
	AggP95            = "p95"
	AggP99            = "p99"
)

// Aggregations lists every aggregation this version understands.
func Aggregations() []string {
	return []string{AggLatest, AggCount, AggSum, AggAvg, AggMin, AggMax, AggStddev, AggFirst, AggLast,
		AggApproxDistinct, AggP50, AggP90, AggP95, AggP99}
}

// QuantileOf returns the rank (0..1) of a quantile aggregation.
func QuantileOf(agg string) (float64, bool) {
	switch agg {
	case AggP50:
		return 0.5, true
	case AggP90:
		return 0.9, true
	case AggP95:
		return 0.95, true
	case AggP99:
		return 0.99, true
	}
	return 0, false
}

// IsQuantile reports whether agg is a quantile aggregation.
func IsQuantile(agg string) bool {
	_, ok := QuantileOf(agg)
	return ok
}

// Source formats.
const (
	FormatDebezium = "debezium"
	FormatJSON     = "json"
)

// View is one feature view.
type View struct {
	Name   string `yaml:"name"`
	Entity Entity `yaml:"entity"`
	Source Source `yaml:"source"`
	// MaxAge marks a value STALE when its newest event is older; 0 never.
	MaxAge   Duration  `yaml:"max_age"`
	Features []Feature `yaml:"features"`

	// File is the file the view was read from.
	File string `yaml:"-"`
}

// Entity names the entity a view describes and its join keys.
type Entity struct {
	Name     string   `yaml:"name"`
	JoinKeys []string `yaml:"join_keys"`
}

// Source is where a view's events come from.
type Source struct {
	Topic string `yaml:"topic"`
	// Format is debezium (the after image of change events) or json.
	Format string `yaml:"format"`
	// Ops selects Debezium operations (c, u, d, r); default c, r, u, d.
	Ops []string `yaml:"ops"`
	// EventTime is the field holding the event time (RFC 3339 string, or
	// Unix milliseconds); empty uses the Kafka record time.
	EventTime string `yaml:"event_time"`
	// AllowedLateness is how late an event may arrive and still count.
	AllowedLateness Duration `yaml:"allowed_lateness"`
	// Filter keeps only rows matching it (see the package doc).
	Filter string `yaml:"filter"`
	// Conditions is Filter parsed; all must hold.
	Conditions []Condition `yaml:"-"`
}

// Feature is one feature of a view.
type Feature struct {
	Name string `yaml:"name"`
	// Column is the source field aggregated; count may omit it.
	Column      string   `yaml:"column"`
	Aggregation string   `yaml:"aggregation"`
	Window      Duration `yaml:"window"`
}

// Ref is "view:feature".
func (v *View) Ref(f Feature) string { return v.Name + ":" + f.Name }

// Feature returns the named feature.
func (v *View) Feature(name string) (Feature, bool) {
	for _, f := range v.Features {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// Duration is a time.Duration written as "10m", "24h" or "7d".
type Duration time.Duration

// UnmarshalYAML parses Go durations plus a "d" (24h) unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String renders the duration compactly ("7d", "10m").
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", td/(24*time.Hour))
	}
	s := td.String()
	s = strings.TrimSuffix(strings.TrimSuffix(s, "0s"), "0m")
	if s == "" {
		return "0s"
	}
	return s
}

// ParseDuration parses Go durations plus whole days ("30d").
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n {
			return 0, fmt.Errorf("duration %q: want a whole number of days like 7d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a duration like 10m, 24h or 7d", s)
	}
	return d, nil
}

// Error is a validation error at a place in a file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// LoadDir reads every *.yaml and *.yml file of dir. Errors of all files are
// joined, each naming file, line and field.
func LoadDir(dir string) ([]*View, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("feature views: %w", err)
		}
		return nil, fmt.Errorf("feature views: no *.yaml files in %s", dir)
	}
	sort.Strings(files)
	var views []*View
	var errs []error
	seen := map[string]string{}
	for _, f := range files {
		v, err := LoadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := seen[v.Name]; ok {
			errs = append(errs, &Error{File: f, Line: 1, Field: "name", Msg: fmt.Sprintf("view %q is also declared in %s", v.Name, prev)})
			continue
		}
		seen[v.Name] = f
		views = append(views, v)
	}
	return views, errors.Join(errs...)
}

// LoadFile reads and validates one feature view file.
func LoadFile(path string) (*View, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and validates a feature view; file names it in errors.
func Parse(file string, data []byte) (*View, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{File: file, Line: 1, Field: "name", Msg: "file is empty"}
	}
	if root.Content[0].Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: root.Content[0].Line, Field: "name", Msg: "a feature view is a YAML mapping"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var v View
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	v.File = file
	if err := v.validate(root.Content[0]); err != nil {
		return nil, err
	}
	return &v, nil
}

func (v *View) validate(doc *yaml.Node) error {
	fail := func(path, msg string) error {
		return &Error{File: v.File, Line: lineOf(doc, path), Field: path, Msg: msg}
	}
	if !validName(v.Name) {
		return fail("name", fmt.Sprintf("%q must be lower-case letters, digits and _ starting with a letter", v.Name))
	}
	if len(v.Entity.JoinKeys) == 0 {
		return fail("entity.join_keys", "at least one join key is required")
	}
	if v.Source.Topic == "" {
		return fail("source.topic", "required")
	}
	switch v.Source.Format {
	case FormatDebezium, FormatJSON:
	case "":
		v.Source.Format = FormatJSON
	default:
		return fail("source.format", fmt.Sprintf("%q is not debezium or json", v.Source.Format))
	}
	if len(v.Source.Ops) == 0 {
		v.Source.Ops = []string{"c", "r", "u", "d"}
	}
	for i, op := range v.Source.Ops {
		if !slices.Contains([]string{"c", "r", "u", "d"}, op) {
			return fail(fmt.Sprintf("source.ops[%d]", i), fmt.Sprintf("%q is not one of c, r, u, d", op))
		}
	}
	if v.Source.AllowedLateness < 0 {
		return fail("source.allowed_lateness", "must not be negative")
	}
	if v.Source.Filter != "" {
		conds, err := ParseFilter(v.Source.Filter)
		if err != nil {
			return fail("source.filter", err.Error())
		}
		v.Source.Conditions = conds
	}
	if len(v.Features) == 0 {
		return fail("features", "at least one feature is required")
	}
	names := map[string]bool{}
	for i, f := range v.Features {
		p := fmt.Sprintf("features[%d]", i)
		if !validName(f.Name) {
			return fail(p+".name", fmt.Sprintf("%q must be lower-case letters, digits and _ starting with a letter", f.Name))
		}
		if names[f.Name] {
			return fail(p+".name", fmt.Sprintf("feature %q is declared twice", f.Name))
		}
		names[f.Name] = true
		if !slices.Contains(Aggregations(), f.Aggregation) {
			return fail(p+".aggregation", fmt.Sprintf("%q is not one of %s", f.Aggregation, strings.Join(Aggregations(), ", ")))
		}
		if f.Column == "" && f.Aggregation != AggCount {
			return fail(p+".column", "required for "+f.Aggregation)
		}
		switch {
		case f.Aggregation == AggLatest && f.Window != 0:
			return fail(p+".window", "latest values take no window")
		case f.Aggregation != AggLatest && f.Window <= 0:
			return fail(p+".window", "a windowed aggregation needs a window such as 10m, 24h or 7d")
		case f.Window > Duration(366*24*time.Hour):
			return fail(p+".window", "windows longer than a year are not supported")
		}
	}
	return nil
}

func validName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// lineOf finds the line of a dotted path like "features[2].window" in doc,
// falling back to the nearest enclosing node that exists.
func lineOf(doc *yaml.Node, path string) int {
	n := doc
	line := doc.Line
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			fmt.Sscanf(part[i:], "[%d]", &idx)
		}
		next := mapValue(n, name)
		if next == nil {
			return line
		}
		n, line = next, next.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			if n.Content[i+1].Kind == yaml.ScalarNode {
				return &yaml.Node{Kind: yaml.ScalarNode, Line: n.Content[i].Line, Value: n.Content[i+1].Value}
			}
			v := *n.Content[i+1]
			v.Line = n.Content[i].Line
			return &v
		}
	}
	return nil
}
