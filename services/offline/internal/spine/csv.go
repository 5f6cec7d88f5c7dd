package spine

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// ReadCSV reads a CSV spine with a header line.
func ReadCSV(path string) (*Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spine: %w", err)
	}
	defer f.Close()
	return DecodeCSV(path, f)
}

// DecodeCSV reads a CSV spine from r; name names it in errors.
func DecodeCSV(name string, r io.Reader) (*Table, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file, want a header line with %s and the join keys", name, EventTimestamp)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t := &Table{File: name, Columns: append([]string(nil), header...)}
	// A UTF-8 byte order mark (spreadsheets write one) is not part of the
	// first column's name.
	if len(t.Columns) > 0 {
		if c := t.Columns[0]; len(c) >= 3 && c[:3] == "\xef\xbb\xbf" {
			t.Columns[0] = c[3:]
		}
	}
	t.Kinds = make([]ColKind, len(t.Columns))
	if err := t.init(); err != nil {
		return nil, err
	}
	ts := t.index[EventTimestamp]
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// csv.ParseError names the line and column.
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		ms, err := ParseTimestamp(rec[ts])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: column %s: %w", name, line, EventTimestamp, err)
		}
		t.Events = append(t.Events, ms)
		t.Cells = append(t.Cells, rec...)
	}
	// Copies of the cells: with ReuseRecord the strings are still fresh
	// per record (csv allocates one string per record and slices it), so
	// nothing is shared with the reader's buffer.
	return t, nil
}

// csvCell renders a feature value as CSV text.
func formatFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
