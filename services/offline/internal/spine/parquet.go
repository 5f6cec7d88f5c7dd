package spine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// ReadParquet reads a Parquet spine: a flat schema of scalar columns.
func ReadParquet(path string) (t *Table, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spine: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spine: %w", err)
	}
	return DecodeParquet(path, f, st.Size())
}

// DecodeParquet reads a Parquet spine from r of size bytes; name names it
// in errors.
func DecodeParquet(name string, r io.ReaderAt, size int64) (t *Table, err error) {
	// A corrupt file can make the decoder panic deep inside; it is input,
	// so it gets an error, not a crash.
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("%s: corrupt Parquet file: %v", name, p)
		}
	}()
	pf, err := parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", name, err)
	}
	fields := pf.Schema().Fields()
	t = &Table{File: name}
	unit := make([]int64, len(fields)) // ns per timestamp unit, 0 if not a timestamp
	for i, fl := range fields {
		if !fl.Leaf() || fl.Repeated() {
			return nil, fmt.Errorf("%s: column %q is nested or repeated; a spine has scalar columns only", name, fl.Name())
		}
		t.Columns = append(t.Columns, fl.Name())
		k, u, err := kindOf(fl)
		if err != nil {
			return nil, fmt.Errorf("%s: column %q: %w", name, fl.Name(), err)
		}
		t.Kinds = append(t.Kinds, k)
		unit[i] = u
	}
	if err := t.init(); err != nil {
		return nil, err
	}
	ts := t.index[EventTimestamp]
	nc := len(t.Columns)
	rd := parquet.NewReader(r)
	defer rd.Close()
	rows := make([]parquet.Row, 256)
	rowNum := 0
	// The footer's row count sizes the table (bounded: it is input).
	if n := pf.NumRows(); n > 0 && n < 1<<26 {
		t.Cells = make([]string, 0, int(n)*nc)
		t.Events = make([]int64, 0, int(n))
	}
	for {
		n, err := rd.ReadRows(rows)
		for _, row := range rows[:n] {
			rowNum++
			base := len(t.Cells)
			t.Cells = slices.Grow(t.Cells, nc)[:base+nc]
			cells := t.Cells[base:]
			clear(cells)
			if t.Nulls != nil {
				t.Nulls = append(t.Nulls, make([]bool, nc)...)
			}
			for _, v := range row {
				c := v.Column()
				if c < 0 || c >= nc {
					return nil, fmt.Errorf("%s: row %d: value of unknown column %d", name, rowNum, c)
				}
				if v.IsNull() {
					if t.Nulls == nil {
						t.Nulls = make([]bool, len(t.Cells), cap(t.Cells))
					}
					t.Nulls[base+c] = true
					continue
				}
				cells[c] = text(v, t.Kinds[c], unit[c])
			}
			if t.Nulls != nil && t.Nulls[base+ts] {
				return nil, fmt.Errorf("%s: row %d: column %s: null", name, rowNum, EventTimestamp)
			}
			ms, err := ParseTimestamp(cells[ts])
			if err != nil {
				return nil, fmt.Errorf("%s: row %d: column %s: %w", name, rowNum, EventTimestamp, err)
			}
			t.Events = append(t.Events, ms)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: row %d: corrupt Parquet file: %w", name, rowNum+1, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: row %d: corrupt Parquet file: the reader makes no progress", name, rowNum+1)
		}
		if int64(rowNum) > pf.NumRows() {
			return nil, fmt.Errorf("%s: corrupt Parquet file: more rows than the footer's %d", name, pf.NumRows())
		}
	}
	if int64(rowNum) != pf.NumRows() {
		return nil, fmt.Errorf("%s: corrupt Parquet file: read %d rows, the footer says %d", name, rowNum, pf.NumRows())
	}
	return t, nil
}

// kindOf maps a Parquet column to a pass-through kind; for timestamps it
// also returns the nanoseconds of the unit.
func kindOf(n parquet.Node) (ColKind, int64, error) {
	lt := n.Type().LogicalType()
	if lt != nil {
		if ts, ok := lt.Value.(*format.TimestampType); ok && ts.Unit.Value != nil {
			return KindTimestamp, ts.Unit.Value.Duration().Nanoseconds(), nil
		}
	}
	switch n.Type().Kind() {
	case parquet.Boolean:
		return KindBool, 0, nil
	case parquet.Int32, parquet.Int64:
		return KindInt64, 0, nil
	case parquet.Float, parquet.Double:
		return KindDouble, 0, nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return KindString, 0, nil
	}
	return 0, 0, fmt.Errorf("unsupported Parquet type %s", n.Type())
}

func text(v parquet.Value, k ColKind, unitNs int64) string {
	switch k {
	case KindTimestamp:
		ns := v.Int64()
		// Unix ms, floor (pre-epoch instants round down, as time.UnixMilli).
		ms := ns * unitNs / 1e6
		if unitNs < 1e6 && ns*unitNs%1e6 < 0 {
			ms--
		}
		return strconv.FormatInt(ms, 10)
	case KindBool:
		return strconv.FormatBool(v.Boolean())
	case KindInt64:
		if v.Kind() == parquet.Int32 {
			return strconv.FormatInt(int64(v.Int32()), 10)
		}
		return strconv.FormatInt(v.Int64(), 10)
	case KindDouble:
		if v.Kind() == parquet.Float {
			return formatFloat(float64(v.Float()))
		}
		return formatFloat(v.Double())
	}
	return string(v.ByteArray())
}

// orderedGroup is a Parquet group whose fields keep the order given
// (parquet.Group sorts them by name): output columns in spine order.
type orderedGroup struct {
	parquet.Group
	fields []parquet.Field
}

func newOrderedGroup(names []string, nodes []parquet.Node) *orderedGroup {
	g := &orderedGroup{Group: parquet.Group{}}
	for i, n := range names {
		g.Group[n] = nodes[i]
		g.fields = append(g.fields, &field{Node: nodes[i], name: n})
	}
	return g
}

func (g *orderedGroup) Fields() []parquet.Field { return g.fields }

type field struct {
	parquet.Node
	name string
}

func (f *field) Name() string { return f.name }

// Value is not used: rows are written as parquet.Row values.
func (f *field) Value(reflect.Value) reflect.Value { return reflect.Value{} }
