package offline

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/kafka"
	"github.com/tributary-ml/tributary/services/offline/internal/archive"
	"github.com/tributary-ml/tributary/services/offline/internal/archiver"
)

// ImportConfig describes one `tributary import`.
type ImportConfig struct {
	// Offline is the archive URL; Topic the topic the rows belong to.
	Offline string
	Topic   string
	// File is CSV (with a header row) or Parquet (flat columns), by extension.
	File string
	// Features, when set, is the feature views directory: a view reading
	// Topic gives the default TimeColumn and KeyColumn (its event_time
	// field and first join key) and the rows' event times.
	Features string
	// TimeColumn holds each row's time (RFC 3339 or Unix ms): the rows'
	// arrival time in the archive (history is taken to have arrived when
	// it happened).
	TimeColumn string
	// KeyColumn is the record key (empty: no key).
	KeyColumn string
	// RowsPerFile splits the import into files (default 100000).
	RowsPerFile int
}

// ImportResult says what Import wrote.
type ImportResult struct {
	Rows  int
	Files []string
	// First and Last are the synthetic offsets given (partition -1).
	First, Last int64
}

// Import loads history older than Kafka's retention into the archive: each
// source row becomes a record of Topic (a JSON object of its columns; for a
// cdc.* topic a Debezium snapshot read, op r, with the row as `after`), in
// partition -1 (archive.ImportPartition) at offsets following the topic's
// earlier imports, ordered by time. The files appear whole; a failed
// import leaves the files it finished, which a repeated import does not
// overwrite (it continues at the next offset): delete them first.
func Import(ctx context.Context, cfg ImportConfig) (ImportResult, error) {
	if cfg.Topic == "" {
		return ImportResult{}, errors.New("topic: required")
	}
	if cfg.RowsPerFile <= 0 {
		cfg.RowsPerFile = 100_000
	}
	var views []*featurespec.View
	if cfg.Features != "" {
		var err error
		if views, err = featurespec.LoadDir(cfg.Features); err != nil {
			return ImportResult{}, fmt.Errorf("features: %w", err)
		}
	}
	plan := archiver.Plans(views, []string{cfg.Topic})[cfg.Topic]
	for _, v := range views {
		if v.Source.Topic != cfg.Topic {
			continue
		}
		if cfg.TimeColumn == "" {
			cfg.TimeColumn = v.Source.EventTime
		}
		if cfg.KeyColumn == "" && len(v.Entity.JoinKeys) > 0 {
			cfg.KeyColumn = v.Entity.JoinKeys[0]
		}
	}
	if cfg.TimeColumn == "" {
		return ImportResult{}, errors.New("time-column: required (no feature view of the topic names an event_time field)")
	}
	rows, err := readSourceRows(cfg.File)
	if err != nil {
		return ImportResult{}, err
	}
	type rec struct {
		ms  int64
		key []byte
		val []byte
	}
	recs := make([]rec, 0, len(rows))
	for i, r := range rows {
		where := fmt.Sprintf("%s: row %d", cfg.File, i+1)
		raw, ok := r[cfg.TimeColumn]
		if !ok {
			return ImportResult{}, fmt.Errorf("%s: no column %q (time-column)", where, cfg.TimeColumn)
		}
		ms, err := featurespec.EventTime(raw)
		if err != nil {
			return ImportResult{}, fmt.Errorf("%s: column %q: %w", where, cfg.TimeColumn, err)
		}
		var key []byte
		if cfg.KeyColumn != "" {
			k, ok := r[cfg.KeyColumn]
			if !ok {
				return ImportResult{}, fmt.Errorf("%s: no column %q (key-column)", where, cfg.KeyColumn)
			}
			key = []byte(fmt.Sprint(k))
		}
		var val any = r
		if plan.CDC() {
			val = map[string]any{"before": nil, "after": r, "op": "r", "ts_ms": ms,
				"source": map[string]any{"connector": "tributary-import", "snapshot": "true", "ts_ms": ms}}
		}
		b, err := json.Marshal(val)
		if err != nil {
			return ImportResult{}, fmt.Errorf("%s: %w", where, err)
		}
		recs = append(recs, rec{ms: ms, key: key, val: b})
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return cmp.Compare(a.ms, b.ms) })

	arc, err := archive.Create(ctx, cfg.Offline)
	if err != nil {
		return ImportResult{}, fmt.Errorf("offline: %w", err)
	}
	defer func() { _ = arc.Close() }()
	files, err := arc.Files(ctx, cfg.Topic)
	if err != nil {
		return ImportResult{}, err
	}
	next := int64(0)
	for _, f := range files {
		if f.Partition == archive.ImportPartition {
			next = max(next, f.Last+1)
		}
	}
	res := ImportResult{First: next, Last: next - 1}
	for start := 0; start < len(recs); start += cfg.RowsPerFile {
		chunk := recs[start:min(start+cfg.RowsPerFile, len(recs))]
		out := make([]archive.Row, len(chunk))
		for i, r := range chunk {
			m := kafka.Message{Topic: cfg.Topic, Partition: archive.ImportPartition, Offset: next, Key: r.key, Value: r.val, Time: time.UnixMilli(r.ms)}
			out[i] = plan.Row(&m)
			next++
		}
		f, err := arc.WriteFile(ctx, out)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, f.Key)
		res.Rows += len(out)
		res.Last = next - 1
	}
	return res, nil
}

// readSourceRows reads a CSV or Parquet file into rows of column → value
// (CSV cells: JSON numbers and booleans where they parse as such, null
// when empty, strings otherwise).
func readSourceRows(path string) ([]map[string]any, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return readCSV(path)
	case ".parquet":
		return readParquet(path)
	}
	return nil, fmt.Errorf("%s: not a .csv or .parquet file", path)
}

func readCSV(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	var rows []map[string]any
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err) // csv.ParseError names line and column
		}
		row := make(map[string]any, len(header))
		for i, h := range header {
			row[h] = csvValue(rec[i])
		}
		rows = append(rows, row)
	}
}

func csvValue(s string) any {
	switch s {
	case "":
		return nil
	case "true":
		return true
	case "false":
		return false
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return json.Number(strconv.FormatInt(i, 10))
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return json.Number(s)
	}
	return s
}

func readParquet(path string) (_ []map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: corrupt parquet: %v", path, p)
		}
	}()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var names []string
	for _, c := range pf.Schema().Columns() {
		if len(c) != 1 {
			return nil, fmt.Errorf("%s: column %s is nested: import reads flat columns", path, strings.Join(c, "."))
		}
		names = append(names, c[0])
	}
	rd := parquet.NewReader(pf)
	defer func() { err = errors.Join(err, rd.Close()) }()
	var rows []map[string]any
	buf := make([]parquet.Row, 128)
	for {
		n, rerr := rd.ReadRows(buf)
		for _, pr := range buf[:n] {
			row := make(map[string]any, len(names))
			for _, v := range pr {
				c := v.Column()
				if c < 0 || c >= len(names) {
					continue
				}
				row[names[c]] = parquetValue(v)
			}
			rows = append(rows, row)
		}
		if rerr == io.EOF {
			return rows, nil
		}
		if rerr != nil {
			return nil, fmt.Errorf("%s: %w", path, rerr)
		}
	}
}

func parquetValue(v parquet.Value) any {
	if v.IsNull() {
		return nil
	}
	switch v.Kind() {
	case parquet.Boolean:
		return v.Boolean()
	case parquet.Int32:
		return json.Number(strconv.FormatInt(int64(v.Int32()), 10))
	case parquet.Int64:
		return json.Number(strconv.FormatInt(v.Int64(), 10))
	case parquet.Float:
		return float64(v.Float())
	case parquet.Double:
		return v.Double()
	}
	return string(v.ByteArray())
}
