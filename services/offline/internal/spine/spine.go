// Package spine reads training-set spines and writes training sets, as CSV
// or Parquet chosen by the file's extension (.csv, .parquet).
//
// A spine has an `event_timestamp` column (RFC 3339, or Unix milliseconds
// as an integer; in Parquet also a TIMESTAMP column of any unit), the join
// keys of the requested views, and any other columns, which are passed
// through to the output unchanged. Errors name the file, the line (CSV) or
// row (Parquet, 1-based) and the column.
//
// The output is the spine's columns, then, per requested feature, its value
// in column `view__feature` (Feast's convention) and its status in column
// `view__feature__status`: PRESENT, NOT_FOUND (no value: the value column is
// empty, or null in Parquet) or STALE (a value older than the view's
// max_age, as GetOnlineFeatures marks it; the value is kept).
package spine

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EventTimestamp is the spine's column of row instants.
const EventTimestamp = "event_timestamp"

// StatusSuffix ends the name of a feature's status column.
const StatusSuffix = "__status"

// ColKind is the type of a pass-through column.
type ColKind uint8

// Column kinds. CSV columns are strings; Parquet columns keep their type.
const (
	KindString ColKind = iota
	KindInt64
	KindDouble
	KindBool
	// KindTimestamp is a Parquet timestamp, kept as Unix ms text.
	KindTimestamp
)

// Table is a spine read into memory: every column as text (nulls are
// empty and flagged), and each row's instant.
type Table struct {
	// File is where the spine was read from, for errors.
	File    string
	Columns []string
	Kinds   []ColKind
	// Cells are the rows' values, row-major, len(Columns) per row.
	Cells []string
	// Nulls flags null cells (Parquet); nil when there are none.
	Nulls []bool
	// Events are the rows' event_timestamp in Unix ms.
	Events []int64
	index  map[string]int
}

// Len implements pointintime.Spine.
func (t *Table) Len() int { return len(t.Events) }

// EventMs implements pointintime.Spine.
func (t *Table) EventMs(i int) int64 { return t.Events[i] }

// JoinKey implements pointintime.Spine.
func (t *Table) JoinKey(i int, key string) (string, bool) {
	c, ok := t.index[key]
	if !ok {
		return "", false
	}
	k := i*len(t.Columns) + c
	if t.Nulls != nil && t.Nulls[k] {
		return "", false
	}
	return t.Cells[k], true
}

// Column returns the index of a column.
func (t *Table) Column(name string) (int, bool) {
	c, ok := t.index[name]
	return c, ok
}

// RequireColumns checks that the spine has every named column (the join
// keys of the requested views), naming the file and the missing column.
func (t *Table) RequireColumns(what string, names ...string) error {
	for _, n := range names {
		if _, ok := t.index[n]; !ok {
			return fmt.Errorf("%s: no column %q (%s); columns: %s", t.File, n, what, strings.Join(t.Columns, ", "))
		}
	}
	return nil
}

func (t *Table) init() error {
	t.index = make(map[string]int, len(t.Columns))
	for i, c := range t.Columns {
		if _, dup := t.index[c]; dup {
			return fmt.Errorf("%s: column %q appears twice", t.File, c)
		}
		t.index[c] = i
	}
	if _, ok := t.index[EventTimestamp]; !ok {
		return fmt.Errorf("%s: no %s column (the instant of each row, RFC 3339 or Unix ms); columns: %s", t.File, EventTimestamp, strings.Join(t.Columns, ", "))
	}
	return nil
}

// Format is a file format.
type Format uint8

// Formats.
const (
	CSV Format = iota
	Parquet
)

// FormatOf picks the format by the file's extension.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV, nil
	case ".parquet", ".pq":
		return Parquet, nil
	}
	return 0, fmt.Errorf("%s: unknown file type %q, want .csv or .parquet", path, filepath.Ext(path))
}

// Read reads a spine, CSV or Parquet by extension.
func Read(path string) (*Table, error) {
	f, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	if f == Parquet {
		return ReadParquet(path)
	}
	return ReadCSV(path)
}

// ParseTimestamp parses an event_timestamp: an integer is Unix
// milliseconds; anything else must be RFC 3339 (fractional seconds and a
// zone offset allowed; truncated to the millisecond). As RFC 3339 allows
// (and pandas writes), a space may separate date and time; a time without
// a zone is UTC.
func ParseTimestamp(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty %s", EventTimestamp)
	}
	if c := s[0]; c >= '0' && c <= '9' || c == '-' {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return ms, nil
		}
	}
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.Parse("2006-01-02T15:04:05.999999999", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%s %q: want RFC 3339 (2024-05-01T12:00:00Z) or Unix milliseconds", EventTimestamp, s)
	}
	return t.UnixMilli(), nil
}

// NewTable builds a spine in memory, for spines that do not come from a
// file (the prediction log's): the columns and their kinds, the cells
// row-major (len(columns) per row), the null cells flagged (nil: none)
// and each row's instant in Unix ms. name stands for the file in errors.
func NewTable(name string, columns []string, kinds []ColKind, cells []string, nulls []bool, events []int64) (*Table, error) {
	switch {
	case len(kinds) != len(columns):
		return nil, fmt.Errorf("%s: %d column kinds for %d columns", name, len(kinds), len(columns))
	case len(cells) != len(columns)*len(events):
		return nil, fmt.Errorf("%s: %d cells for %d rows of %d columns", name, len(cells), len(events), len(columns))
	case nulls != nil && len(nulls) != len(cells):
		return nil, fmt.Errorf("%s: %d null flags for %d cells", name, len(nulls), len(cells))
	}
	t := &Table{File: name, Columns: columns, Kinds: kinds, Cells: cells, Nulls: nulls, Events: events}
	if err := t.init(); err != nil {
		return nil, err
	}
	return t, nil
}
