// Package pinottest is a stand-in for a Pinot broker in tests: it answers
// POST /query/sql in Pinot's JSON shape from rows it holds (upserted by
// pk, as the REALTIME upsert table does), evaluating the SQL subset the
// metrics service sends — SELECT columns FROM table WHERE col op literal
// [AND ...] [GROUP BY cols] [ORDER BY cols] [LIMIT n] — against a Pinot
// schema, and reports unknown tables and columns as exceptions in a 200
// answer, as Pinot does.
package pinottest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Schema is a Pinot schema file's columns by name with their data types.
type Schema struct {
	Name    string
	Columns map[string]string
	// PK is the primary key column.
	PK string
	// Comparison is the upsert comparison column (from the table config;
	// empty: the later record always wins).
	Comparison string
}

// TableConfig is the part of a REALTIME table config the stand-in and the
// deploy tests read.
type TableConfig struct {
	TableName      string `json:"tableName"`
	TableType      string `json:"tableType"`
	SegmentsConfig struct {
		SchemaName           string `json:"schemaName"`
		TimeColumnName       string `json:"timeColumnName"`
		ReplicasPerPartition string `json:"replicasPerPartition"`
	} `json:"segmentsConfig"`
	TableIndexConfig struct {
		InvertedIndexColumns []string          `json:"invertedIndexColumns"`
		NoDictionaryColumns  []string          `json:"noDictionaryColumns"`
		StreamConfigs        map[string]string `json:"streamConfigs"`
	} `json:"tableIndexConfig"`
	FieldConfigList []struct {
		Name         string `json:"name"`
		EncodingType string `json:"encodingType"`
	} `json:"fieldConfigList"`
	Routing struct {
		InstanceSelectorType string `json:"instanceSelectorType"`
	} `json:"routing"`
	UpsertConfig *struct {
		Mode              string   `json:"mode"`
		ComparisonColumns []string `json:"comparisonColumns"`
	} `json:"upsertConfig"`
}

// LoadTableConfig reads a Pinot table config JSON file.
func LoadTableConfig(path string) (TableConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return TableConfig{}, err
	}
	var c TableConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return TableConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// LoadDeployed reads a schema and its REALTIME table config and returns
// the schema with the config's upsert comparison column (the time column
// when the config names none, as Pinot does).
func LoadDeployed(schemaPath, tablePath string) (Schema, error) {
	s, err := LoadSchema(schemaPath)
	if err != nil {
		return Schema{}, err
	}
	c, err := LoadTableConfig(tablePath)
	if err != nil {
		return Schema{}, err
	}
	s.Comparison = c.SegmentsConfig.TimeColumnName
	if c.UpsertConfig != nil && len(c.UpsertConfig.ComparisonColumns) > 0 {
		s.Comparison = c.UpsertConfig.ComparisonColumns[0]
	}
	return s, nil
}

// LoadSchema reads a Pinot schema JSON file.
func LoadSchema(path string) (Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Schema{}, err
	}
	var f struct {
		SchemaName string   `json:"schemaName"`
		Dims       []spec   `json:"dimensionFieldSpecs"`
		Metrics    []spec   `json:"metricFieldSpecs"`
		DateTimes  []spec   `json:"dateTimeFieldSpecs"`
		PKCols     []string `json:"primaryKeyColumns"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return Schema{}, fmt.Errorf("%s: %w", path, err)
	}
	s := Schema{Name: f.SchemaName, Columns: map[string]string{}}
	for _, group := range [][]spec{f.Dims, f.Metrics, f.DateTimes} {
		for _, c := range group {
			s.Columns[c.Name] = c.DataType
		}
	}
	if len(f.PKCols) == 1 {
		s.PK = f.PKCols[0]
	}
	return s, nil
}

type spec struct {
	Name     string `json:"name"`
	DataType string `json:"dataType"`
}

// Broker is the stand-in broker.
type Broker struct {
	URL    string
	schema Schema

	mu      sync.Mutex
	rows    map[string]map[string]any
	queries []string
	// fail, when set, is answered as an exception to the next query.
	fail string
}

// Start serves a broker for schema until the test ends.
func Start(t testing.TB, schema Schema) *Broker {
	t.Helper()
	b := &Broker{schema: schema, rows: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	return b
}

// Ingest upserts one row given as its JSON object (as Pinot's Kafka JSON
// decoder reads it): fields outside the schema are dropped.
func (b *Broker) Ingest(record []byte) error {
	var obj map[string]any
	if err := json.Unmarshal(record, &obj); err != nil {
		return err
	}
	row := map[string]any{}
	for c := range b.schema.Columns {
		if v, ok := obj[c]; ok {
			row[c] = v
		}
	}
	pk, _ := row[b.schema.PK].(string)
	if pk == "" {
		return fmt.Errorf("record without %s", b.schema.PK)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Pinot's upsert replaces the current record when the new one's
	// comparison value is greater or equal.
	if cur, ok := b.rows[pk]; ok && b.schema.Comparison != "" && compare(row[b.schema.Comparison], cur[b.schema.Comparison]) < 0 {
		return nil
	}
	b.rows[pk] = row
	return nil
}

// FailNext makes the next query answer 200 with an exception.
func (b *Broker) FailNext(msg string) {
	b.mu.Lock()
	b.fail = msg
	b.mu.Unlock()
}

// Queries returns the SQL received so far.
func (b *Broker) Queries() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.queries...)
}

type exception struct {
	ErrorCode int    `json:"errorCode"`
	Message   string `json:"message"`
}

func (b *Broker) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/query/sql" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req struct {
		SQL          string `json:"sql"`
		QueryOptions string `json:"queryOptions"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.queries = append(b.queries, req.SQL)
	fail := b.fail
	b.fail = ""
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if fail != "" {
		writeJSON(w, map[string]any{"exceptions": []exception{{ErrorCode: 200, Message: fail}}, "numServersQueried": 1})
		return
	}
	if !strings.Contains(req.QueryOptions, "responseFormat=sql") {
		writeJSON(w, map[string]any{"exceptions": []exception{{ErrorCode: 150, Message: "stand-in answers only responseFormat=sql"}}})
		return
	}
	names, types, rows, err := b.execute(req.SQL)
	if err != nil {
		writeJSON(w, map[string]any{"exceptions": []exception{{ErrorCode: 710, Message: err.Error()}}, "numServersQueried": 1})
		return
	}
	writeJSON(w, map[string]any{
		"resultTable": map[string]any{
			"dataSchema": map[string]any{"columnNames": names, "columnDataTypes": types},
			"rows":       rows,
		},
		"exceptions": []exception{}, "numServersQueried": 1, "numServersResponded": 1,
		"totalDocs": len(rows),
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	_ = json.NewEncoder(w).Encode(v)
}

type cond struct {
	col, op string
	val     any // string or float64
}

type query struct {
	table   string
	cols    []string
	where   []cond
	groupBy []string
	orderBy []string
	limit   int
}

func tokenize(sql string) ([]string, error) {
	var toks []string
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t':
			i++
		case c == '\'':
			var sb strings.Builder
			j := i + 1
			for ; j < len(sql); j++ {
				if sql[j] == '\'' {
					if j+1 < len(sql) && sql[j+1] == '\'' {
						sb.WriteByte('\'')
						j++
						continue
					}
					break
				}
				sb.WriteByte(sql[j])
			}
			if j >= len(sql) {
				return nil, fmt.Errorf("unterminated string literal")
			}
			toks = append(toks, "'"+sb.String())
			i = j + 1
		case c == '"':
			j := strings.IndexByte(sql[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quoted identifier")
			}
			toks = append(toks, sql[i:i+j+2])
			i += j + 2
		case c == ',' || c == '*' || c == '(' || c == ')':
			toks = append(toks, string(c))
			i++
		case c == '<' || c == '>' || c == '=' || c == '!':
			j := i + 1
			if j < len(sql) && sql[j] == '=' {
				j++
			}
			toks = append(toks, sql[i:j])
			i = j
		default:
			j := i
			for j < len(sql) && !strings.ContainsRune(" \n\t,'()<>=!*", rune(sql[j])) {
				j++
			}
			toks = append(toks, sql[i:j])
			i = j
		}
	}
	return toks, nil
}

func parse(sql string) (query, error) {
	toks, err := tokenize(sql)
	if err != nil {
		return query{}, err
	}
	var q query
	pos := 0
	peek := func() string {
		if pos < len(toks) {
			return toks[pos]
		}
		return ""
	}
	kw := func(w string) bool {
		if strings.EqualFold(peek(), w) {
			pos++
			return true
		}
		return false
	}
	var identErr error
	// ident reads a column name: "quoted" or a bare word that is not one of
	// Calcite's reserved words (Pinot rejects those unquoted).
	ident := func() string {
		t := peek()
		pos++
		if strings.HasPrefix(t, `"`) {
			return strings.Trim(t, `"`)
		}
		if reserved[strings.ToUpper(t)] && identErr == nil {
			identErr = fmt.Errorf("SQLParsingError: Encountered \"%s\": %s is a reserved keyword, quote it", t, t)
		}
		return t
	}
	list := func() []string {
		var out []string
		for {
			out = append(out, ident())
			if peek() != "," {
				return out
			}
			pos++
		}
	}
	if !kw("SELECT") {
		return q, fmt.Errorf("expected SELECT")
	}
	q.cols = list()
	if !kw("FROM") {
		return q, fmt.Errorf("expected FROM")
	}
	q.table = peek()
	pos++
	if kw("WHERE") {
		for {
			c := cond{col: ident()}
			c.op = peek()
			pos++
			lit := peek()
			pos++
			switch {
			case strings.HasPrefix(lit, "'"):
				c.val = lit[1:]
			default:
				f, err := strconv.ParseFloat(lit, 64)
				if err != nil {
					return q, fmt.Errorf("bad literal %q", lit)
				}
				c.val = f
			}
			switch c.op {
			case "=", "<", "<=", ">", ">=", "!=":
			default:
				return q, fmt.Errorf("unsupported operator %q", c.op)
			}
			q.where = append(q.where, c)
			if !kw("AND") {
				break
			}
		}
	}
	if kw("GROUP") {
		if !kw("BY") {
			return q, fmt.Errorf("expected BY")
		}
		q.groupBy = list()
	}
	if kw("ORDER") {
		if !kw("BY") {
			return q, fmt.Errorf("expected BY")
		}
		q.orderBy = list()
	}
	q.limit = 10 // Pinot's default
	if kw("LIMIT") {
		n, err := strconv.Atoi(peek())
		if err != nil {
			return q, fmt.Errorf("bad LIMIT %q", peek())
		}
		q.limit = n
		pos++
	}
	if pos != len(toks) {
		return q, fmt.Errorf("unexpected %q", peek())
	}
	return q, identErr
}

// reserved are the Calcite reserved words among plausible column names.
var reserved = map[string]bool{
	"MINUTE": true, "HOUR": true, "DAY": true, "MONTH": true, "YEAR": true, "SECOND": true,
	"PRECISION": true, "VALUE": true, "TIMESTAMP": true, "DATE": true, "TIME": true, "USER": true,
	"ROWS": true, "RANGE": true, "COUNT": true, "SUM": true, "MIN": true, "MAX": true,
}

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

func compare(a, b any) int {
	if fa, ok := num(a); ok {
		fb, _ := num(b)
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func (b *Broker) execute(sql string) ([]string, []string, [][]any, error) {
	q, err := parse(sql)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("QueryValidationError: %w", err)
	}
	if q.table != b.schema.Name {
		return nil, nil, nil, fmt.Errorf("TableDoesNotExistError: unknown table %s", q.table)
	}
	check := func(cols []string) error {
		for _, c := range cols {
			if _, ok := b.schema.Columns[c]; !ok {
				return fmt.Errorf("QueryValidationError: Unknown columnName '%s' found in the query", c)
			}
		}
		return nil
	}
	whereCols := make([]string, len(q.where))
	for i, c := range q.where {
		whereCols[i] = c.col
	}
	for _, cols := range [][]string{q.cols, whereCols, q.groupBy, q.orderBy} {
		if err := check(cols); err != nil {
			return nil, nil, nil, err
		}
	}
	if len(q.groupBy) > 0 && strings.Join(q.cols, ",") != strings.Join(q.groupBy, ",") {
		return nil, nil, nil, fmt.Errorf("QueryValidationError: selected columns must be the GROUP BY columns")
	}
	b.mu.Lock()
	var matched []map[string]any
	for _, r := range b.rows {
		ok := true
		for _, c := range q.where {
			cmp := compare(r[c.col], c.val)
			switch c.op {
			case "=":
				ok = ok && cmp == 0
			case "!=":
				ok = ok && cmp != 0
			case "<":
				ok = ok && cmp < 0
			case "<=":
				ok = ok && cmp <= 0
			case ">":
				ok = ok && cmp > 0
			case ">=":
				ok = ok && cmp >= 0
			}
		}
		if ok {
			matched = append(matched, r)
		}
	}
	b.mu.Unlock()
	if len(q.groupBy) > 0 {
		seen := map[string]bool{}
		var groups []map[string]any
		for _, r := range matched {
			k := fmt.Sprint(project(r, q.groupBy))
			if !seen[k] {
				seen[k] = true
				groups = append(groups, r)
			}
		}
		matched = groups
	}
	sort.SliceStable(matched, func(i, j int) bool {
		for _, c := range q.orderBy {
			if d := compare(matched[i][c], matched[j][c]); d != 0 {
				return d < 0
			}
		}
		return false
	})
	if len(matched) > q.limit {
		matched = matched[:q.limit]
	}
	types := make([]string, len(q.cols))
	for i, c := range q.cols {
		types[i] = b.schema.Columns[c]
	}
	rows := make([][]any, len(matched))
	for i, r := range matched {
		rows[i] = project(r, q.cols)
	}
	return q.cols, types, rows, nil
}

// project returns r's values of cols, with Pinot's defaults for absent ones.
func project(r map[string]any, cols []string) []any {
	out := make([]any, len(cols))
	for i, c := range cols {
		v, ok := r[c]
		if !ok {
			v = nil
		}
		out[i] = v
	}
	return out
}
