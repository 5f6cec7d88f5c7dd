package spine

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles/served"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
)

// Write writes the training set of spine t and result res to path, CSV or
// Parquet by extension: the spine's columns of the result's rows, then per
// feature its value and status columns.
func Write(path string, t *Table, res *pointintime.Result) (err error) {
	form, err := FormatOf(path)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("training set: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("training set: close %s: %w", path, cerr)
		}
	}()
	if form == Parquet {
		return EncodeParquet(f, t, res)
	}
	return EncodeCSV(f, t, res)
}

// Header lists the output columns.
func Header(t *Table, res *pointintime.Result) []string {
	h := append([]string(nil), t.Columns...)
	for _, f := range res.Features {
		h = append(h, f.Column, f.Column+StatusSuffix)
	}
	return h
}

// EncodeCSV writes the training set as CSV.
func EncodeCSV(w io.Writer, t *Table, res *pointintime.Result) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	cw := csv.NewWriter(bw)
	if err := cw.Write(Header(t, res)); err != nil {
		return err
	}
	nc := len(t.Columns)
	rec := make([]string, 0, nc+2*len(res.Features))
	for k, r := range res.Rows {
		rec = append(rec[:0], t.Cells[r*nc:(r+1)*nc]...)
		for _, v := range res.Row(k) {
			rec = append(rec, Text(v), v.Status.String())
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// Text renders a value as text; a missing value is empty.
func Text(v served.Value) string {
	if v.Status == served.StatusNotFound {
		return ""
	}
	switch v.Kind {
	case served.KindDouble:
		return formatFloat(v.Double)
	case served.KindInt64:
		return strconv.FormatInt(v.Int, 10)
	case served.KindBool:
		return strconv.FormatBool(v.Bool)
	case served.KindString:
		return v.Str
	}
	return ""
}

// featureKind is the Parquet type of a feature's value column: DOUBLE for
// the numeric aggregations; for latest, first and last the type of every
// value found when they agree, else STRING (values as text).
func featureKind(agg string, col int, res *pointintime.Result) ColKind {
	switch agg {
	case featurespec.AggLatest, featurespec.AggFirst, featurespec.AggLast:
	default:
		return KindDouble
	}
	kind, seen := served.KindNone, false
	for k := range res.Rows {
		v := res.Row(k)[col]
		if v.Status == served.StatusNotFound || v.Kind == served.KindNone {
			continue
		}
		if seen && v.Kind != kind {
			return KindString
		}
		kind, seen = v.Kind, true
	}
	switch kind {
	case served.KindDouble:
		return KindDouble
	case served.KindInt64:
		return KindInt64
	case served.KindBool:
		return KindBool
	}
	return KindString
}

func leafOf(k ColKind) parquet.Node {
	switch k {
	case KindInt64:
		return parquet.Int(64)
	case KindDouble:
		return parquet.Leaf(parquet.DoubleType)
	case KindBool:
		return parquet.Leaf(parquet.BooleanType)
	case KindTimestamp:
		return parquet.Timestamp(parquet.Millisecond)
	}
	return parquet.String()
}

// EncodeParquet writes the training set as Parquet: pass-through columns
// keep their Parquet types (CSV ones are strings), value columns are
// optional (null when NOT_FOUND), status columns strings.
func EncodeParquet(w io.Writer, t *Table, res *pointintime.Result) error {
	names := Header(t, res)
	kinds := append([]ColKind(nil), t.Kinds...)
	var nodes []parquet.Node
	for _, k := range t.Kinds {
		nodes = append(nodes, parquet.Optional(leafOf(k)))
	}
	for i, f := range res.Features {
		k := featureKind(f.Spec.Aggregation, i, res)
		kinds = append(kinds, k, KindString)
		nodes = append(nodes, parquet.Optional(leafOf(k)), parquet.String())
	}
	schema := parquet.NewSchema("training_set", newOrderedGroup(names, nodes))
	pw := parquet.NewWriter(w, schema, parquet.Compression(&parquet.Zstd))
	nc := len(t.Columns)
	batch := make([]parquet.Row, 0, 1024)
	flush := func() error {
		if _, err := pw.WriteRows(batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for k, r := range res.Rows {
		row := make(parquet.Row, 0, len(names))
		for c := range nc {
			i := r*nc + c
			if t.Nulls != nil && t.Nulls[i] {
				row = append(row, parquet.NullValue().Level(0, 0, c))
				continue
			}
			v, err := cellValue(t.Cells[i], kinds[c])
			if err != nil {
				return fmt.Errorf("%s: row %d: column %q: %w", t.File, r+1, t.Columns[c], err)
			}
			row = append(row, v.Level(0, 1, c))
		}
		for j, v := range res.Row(k) {
			c := nc + 2*j
			if v.Status == served.StatusNotFound || v.Kind == served.KindNone {
				row = append(row, parquet.NullValue().Level(0, 0, c))
			} else {
				row = append(row, featureValue(v, kinds[c]).Level(0, 1, c))
			}
			row = append(row, parquet.ByteArrayValue([]byte(v.Status.String())).Level(0, 0, c+1))
		}
		batch = append(batch, row)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return errors.Join(pw.Close())
}

func cellValue(s string, k ColKind) (parquet.Value, error) {
	switch k {
	case KindInt64, KindTimestamp:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.Int64Value(n), nil
	case KindDouble:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.DoubleValue(x), nil
	case KindBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.BooleanValue(b), nil
	}
	return parquet.ByteArrayValue([]byte(s)), nil
}

func featureValue(v served.Value, k ColKind) parquet.Value {
	switch k {
	case KindDouble:
		if v.Kind == served.KindInt64 {
			return parquet.DoubleValue(float64(v.Int))
		}
		return parquet.DoubleValue(v.Double)
	case KindInt64:
		return parquet.Int64Value(v.Int)
	case KindBool:
		return parquet.BooleanValue(v.Bool)
	}
	return parquet.ByteArrayValue([]byte(Text(v)))
}
