package spine

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/tributary-ml/tributary/libs/featurespec"
	"github.com/tributary-ml/tributary/libs/tiles/served"
	"github.com/tributary-ml/tributary/services/offline/internal/pointintime"
)

func TestParseTimestamp(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"1700000000123", 1_700_000_000_123, ""},
		{"-5", -5, ""},
		{"2023-11-14T22:13:20Z", 1_700_000_000_000, ""},
		{"2023-11-14T22:13:20.123456Z", 1_700_000_000_123, ""},
		{"2023-11-15T00:13:20.5+02:00", 1_700_000_000_500, ""},
		{" 1700000000000 ", 1_700_000_000_000, ""},
		{"", 0, "empty event_timestamp"},
		{"yesterday", 0, `event_timestamp "yesterday": want RFC 3339`},
		{"2023-11-14 22:13:20+00:00", 1_700_000_000_000, ""},
		{"2023-11-14 22:13:20.25", 1_700_000_000_250, ""},
		{"2023-11-14", 0, "want RFC 3339"},
		{"2023-11-14T25:13:20Z", 0, "want RFC 3339"},
		{"1.5", 0, "want RFC 3339"},
	} {
		got, err := ParseTimestamp(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestCSVErrorsNameFileLineAndColumn(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, in, want string
	}{
		{"no event_timestamp", "user_id,label\nu1,1\n", "s.csv: no event_timestamp column"},
		{"bad timestamp", "user_id,event_timestamp\nu1,1700000000000\nu2,noon\n", `s.csv:3: column event_timestamp: event_timestamp "noon"`},
		{"ragged", "user_id,event_timestamp\nu1,1,extra\n", "s.csv: record on line 2: wrong number of fields"},
		{"empty", "", "s.csv: empty file"},
		{"duplicate column", "a,a,event_timestamp\n", `s.csv: column "a" appears twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeCSV("s.csv", strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	tb, err := DecodeCSV("s.csv", strings.NewReader("\xef\xbb\xbfuser_id,event_timestamp\nu1,5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.RequireColumns("join key of view clicks", "user_id", "merchant_id"); err == nil || !strings.Contains(err.Error(), `s.csv: no column "merchant_id" (join key of view clicks)`) {
		t.Fatalf("missing join key: %v", err)
	}
}

func result(t *testing.T, tb *Table) *pointintime.Result {
	t.Helper()
	v, err := featurespec.Parse("v.yaml", []byte(`name: clicks
entity: {name: user, join_keys: [user_id]}
source: {topic: events.clicks}
features:
  - {name: n_10m, aggregation: count, window: 10m}
  - {name: page, column: page, aggregation: latest}
`))
	if err != nil {
		t.Fatal(err)
	}
	feats, err := pointintime.ResolveRefs([]*featurespec.View{v}, []string{"clicks:*"})
	if err != nil {
		t.Fatal(err)
	}
	res := &pointintime.Result{Features: feats}
	for i := range tb.Len() {
		res.Rows = append(res.Rows, i)
		if i%2 == 0 {
			res.Values = append(res.Values, served.Value{Kind: served.KindDouble, Double: float64(i) + 0.5, Status: served.StatusPresent},
				served.Value{Kind: served.KindString, Str: "/p,\"q\"", Status: served.StatusStale})
		} else {
			res.Values = append(res.Values, served.NotFound, served.NotFound)
		}
	}
	return res
}

// TestRoundTrips: CSV → CSV and CSV → Parquet → read back keep the spine
// and the values; Parquet → Parquet keeps the column types.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(in, []byte("user_id,event_timestamp,label\nu1,2023-11-14T22:13:20Z,1\nu2,1700000000001,0\nu3,1700000000002,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, err := Read(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tb.Events, []int64{1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002}) {
		t.Fatalf("events %v", tb.Events)
	}
	res := result(t, tb)
	outCSV := filepath.Join(dir, "out.csv")
	if err := Write(outCSV, tb, res); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(outCSV)
	want := "user_id,event_timestamp,label,clicks__n_10m,clicks__n_10m__status,clicks__page,clicks__page__status\n" +
		"u1,2023-11-14T22:13:20Z,1,0.5,PRESENT,\"/p,\"\"q\"\"\",STALE\n" +
		"u2,1700000000001,0,,NOT_FOUND,,NOT_FOUND\n" +
		"u3,1700000000002,,2.5,PRESENT,\"/p,\"\"q\"\"\",STALE\n"
	if string(got) != want {
		t.Fatalf("CSV output:\n%s\nwant:\n%s", got, want)
	}

	outPQ := filepath.Join(dir, "out.parquet")
	if err := Write(outPQ, tb, res); err != nil {
		t.Fatal(err)
	}
	back, err := Read(outPQ)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Columns, Header(tb, res)) {
		t.Fatalf("Parquet columns %v, want %v", back.Columns, Header(tb, res))
	}
	if back.Kinds[3] != KindDouble || back.Kinds[5] != KindString {
		t.Fatalf("value column kinds %v", back.Kinds)
	}
	if c, _ := back.Column("clicks__n_10m"); back.Cells[c] != "0.5" || !back.Nulls[len(back.Columns)+c] {
		t.Fatalf("values: %v nulls %v", back.Cells, back.Nulls)
	}
	if !slices.Equal(back.Events, tb.Events) {
		t.Fatalf("events back %v, want %v", back.Events, tb.Events)
	}

	// Parquet in, Parquet out: typed columns stay typed.
	res2 := result(t, back)
	res2.Features = res2.Features[:0]
	res2.Values = nil
	out2 := filepath.Join(dir, "out2.parquet")
	if err := Write(out2, back, res2); err != nil {
		t.Fatal(err)
	}
	again, err := Read(out2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Kinds, back.Kinds) || !slices.Equal(again.Cells, back.Cells) || !slices.Equal(again.Nulls, back.Nulls) {
		t.Fatalf("Parquet round trip changed the table:\n%+v\n%+v", again, back)
	}
}

func TestParquetTimestampColumnAndErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	type row struct {
		UserID string `parquet:"user_id"`
		TS     int64  `parquet:"event_timestamp,timestamp(microsecond)"`
	}
	p := filepath.Join(dir, "s.parquet")
	if err := parquet.WriteFile(p, []row{{"u1", 1_700_000_000_123_456}, {"u2", -1}}); err != nil {
		t.Fatal(err)
	}
	tb, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tb.Events, []int64{1_700_000_000_123, -1}) {
		t.Fatalf("events %v", tb.Events)
	}
	type noTS struct {
		UserID string `parquet:"user_id"`
	}
	p2 := filepath.Join(dir, "nots.parquet")
	if err := parquet.WriteFile(p2, []noTS{{"u1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(p2); err == nil || !strings.Contains(err.Error(), "nots.parquet: no event_timestamp column") {
		t.Fatalf("no event_timestamp: %v", err)
	}
	good, _ := os.ReadFile(p)
	bad := filepath.Join(dir, "bad.parquet")
	corrupt := bytes.Clone(good)
	for i := 4; i < len(corrupt)-8; i += 7 {
		corrupt[i] ^= 0x5a
	}
	if err := os.WriteFile(bad, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(bad); err == nil || !strings.Contains(err.Error(), "bad.parquet") {
		t.Fatalf("corrupt file: %v", err)
	}
	if err := os.WriteFile(bad, []byte("user_id,event_timestamp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(bad); err == nil || !strings.Contains(err.Error(), "bad.parquet: not a readable Parquet file") {
		t.Fatalf("CSV named .parquet: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "s.xlsx")); err == nil || !strings.Contains(err.Error(), `unknown file type ".xlsx"`) {
		t.Fatalf("xlsx: %v", err)
	}
}

func FuzzDecodeCSV(f *testing.F) {
	f.Add("user_id,event_timestamp\nu1,1700000000000\n")
	f.Add("event_timestamp,x\n2023-11-14T22:13:20.5+02:00,\"a,b\"\n")
	f.Add("event_timestamp\n\"unterminated\n")
	f.Fuzz(func(t *testing.T, in string) {
		tb, err := DecodeCSV("f.csv", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.csv") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(tb.Cells) != len(tb.Events)*len(tb.Columns) {
			t.Fatalf("%d cells for %d rows of %d columns", len(tb.Cells), len(tb.Events), len(tb.Columns))
		}
	})
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"1700000000000", "2023-11-14T22:13:20Z", "2023-11-14T22:13:20.123+01:00", "", "-", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseTimestamp(s)
		if err != nil {
			return
		}
		// Unix ms render back to themselves.
		if again, err := ParseTimestamp(strings.TrimSpace(s)); err != nil || again != ms {
			t.Fatalf("%q: %d then %d, %v", s, ms, again, err)
		}
	})
}

func FuzzDecodeParquet(f *testing.F) {
	var buf bytes.Buffer
	type row struct {
		UserID string `parquet:"user_id"`
		TS     int64  `parquet:"event_timestamp"`
	}
	if err := parquet.Write(&buf, []row{{"u1", 1}, {"u2", 2}}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := DecodeParquet("f.parquet", bytes.NewReader(b), int64(len(b)))
		if err != nil && !strings.HasPrefix(err.Error(), "f.parquet") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}
