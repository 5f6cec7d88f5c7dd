package predlog

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
)

// event renders a change event of public.labels as ingest writes it.
func event(op, after, seq string) []byte {
	if after == "" {
		after = "null"
	}
	return []byte(`{"before":null,"after":` + after + `,"source":{"version":"tributary","connector":"postgresql","name":"tributary","ts_ms":1793527205000,"snapshot":"false","db":"tributary","sequence":` + seq + `,"schema":"public","table":"labels","txId":77,"lsn":24023000},"op":"` + op + `","ts_ms":1793527206000}`)
}

const seq1 = `"[\"24023128\",\"24023000\"]"`

func TestDecodeCDCLabel(t *testing.T) {
	labeledAt := time.Date(2026, 11, 1, 10, 0, 5, 250_000_000, time.UTC).UnixMilli()
	row := `{"prediction_id":"p1","txn_id":42,"user_id":"u1","is_fraud":true,"labeled_at":"2026-11-01T10:00:05.25Z"}`
	for _, tc := range []struct {
		name    string
		b       []byte
		cols    LabelColumns
		want    CDCLabel
		wantErr string // "" ok; "skip" ErrNotALabel
	}{
		{"insert", event("c", row, seq1), DefaultLabelColumns(), CDCLabel{Label: Label{PredictionID: "p1", Value: 1, TimeMs: labeledAt}, Op: "c", Pos: cdc.Position{CommitLSN: 24023128, LSN: 24023000}}, ""},
		{"snapshot read", event("r", strings.Replace(row, "true", "false", 1), `""`), DefaultLabelColumns(), CDCLabel{Label: Label{PredictionID: "p1", Value: 0, TimeMs: labeledAt}, Op: "r"}, ""},
		{"update", event("u", row, seq1), DefaultLabelColumns(), CDCLabel{Label: Label{PredictionID: "p1", Value: 1, TimeMs: labeledAt}, Op: "u", Pos: cdc.Position{CommitLSN: 24023128, LSN: 24023000}}, ""},
		{"delete", event("d", "", seq1), DefaultLabelColumns(), CDCLabel{}, "skip"},
		{"truncate", event("t", "", seq1), DefaultLabelColumns(), CDCLabel{}, "skip"},
		{"tombstone", nil, DefaultLabelColumns(), CDCLabel{}, "skip"},
		{"numeric label as a string, integer id, no time column",
			event("c", `{"id":7,"outcome":"1.0"}`, seq1), LabelColumns{ID: "id", Label: "outcome"},
			CDCLabel{Label: Label{PredictionID: "7", Value: 1, TimeMs: 1793527206000}, Op: "c", Pos: cdc.Position{CommitLSN: 24023128, LSN: 24023000}}, ""},
		{"null time falls back to the commit time",
			event("c", `{"prediction_id":"p2","is_fraud":false,"labeled_at":null}`, seq1), DefaultLabelColumns(),
			CDCLabel{Label: Label{PredictionID: "p2", Value: 0, TimeMs: 1793527206000}, Op: "c", Pos: cdc.Position{CommitLSN: 24023128, LSN: 24023000}}, ""},
		{"timestamp without zone", event("c", `{"prediction_id":"p3","is_fraud":"t","labeled_at":"2026-11-01T10:00:05.25"}`, seq1), DefaultLabelColumns(),
			CDCLabel{Label: Label{PredictionID: "p3", Value: 1, TimeMs: labeledAt}, Op: "c", Pos: cdc.Position{CommitLSN: 24023128, LSN: 24023000}}, ""},
		{"missing id", event("c", `{"is_fraud":true}`, seq1), DefaultLabelColumns(), CDCLabel{}, "after.prediction_id"},
		{"empty id", event("c", `{"prediction_id":"","is_fraud":true}`, seq1), DefaultLabelColumns(), CDCLabel{}, "after.prediction_id"},
		{"bad label", event("c", `{"prediction_id":"p","is_fraud":"maybe"}`, seq1), DefaultLabelColumns(), CDCLabel{}, "after.is_fraud"},
		{"null label", event("c", `{"prediction_id":"p","is_fraud":null}`, seq1), DefaultLabelColumns(), CDCLabel{}, "after.is_fraud"},
		{"bad time", event("c", `{"prediction_id":"p","is_fraud":true,"labeled_at":"yesterday"}`, seq1), DefaultLabelColumns(), CDCLabel{}, "after.labeled_at"},
		{"bad op", event("x", row, seq1), DefaultLabelColumns(), CDCLabel{}, "op"},
		{"insert without after", event("c", "", seq1), DefaultLabelColumns(), CDCLabel{}, "without after"},
		{"bad sequence", event("c", row, `"[1]"`), DefaultLabelColumns(), CDCLabel{}, "sequence"},
		{"not JSON", []byte(`{"op":`), DefaultLabelColumns(), CDCLabel{}, "decode change event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeCDCLabel(tc.b, tc.cols)
			switch {
			case tc.wantErr == "skip":
				if !errors.Is(err, ErrNotALabel) {
					t.Fatalf("err %v, want it skipped as not a label", err)
				}
			case tc.wantErr != "":
				if err == nil || errors.Is(err, ErrNotALabel) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want an error naming %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got != tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseLabelColumns(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"", DefaultLabelColumns().String(), ""},
		{DefaultLabelColumns().String(), DefaultLabelColumns().String(), ""},
		{"id=pid, label=outcome", "id=pid,label=outcome,time=labeled_at", ""},
		{"time=", "id=prediction_id,label=is_fraud,time=", ""},
		{"id=", "", "id column is empty"},
		{"score=x", "", "role"},
		{"id", "", "role=column"},
	} {
		got, err := ParseLabelColumns(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLabelColumns(%q) = %v, want an error naming %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseLabelColumns(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// FuzzDecodeCDCLabel: any input decodes to a usable label or an error,
// never a panic, and a decoded label has a prediction id.
func FuzzDecodeCDCLabel(f *testing.F) {
	f.Add(event("c", `{"prediction_id":"p1","is_fraud":true,"labeled_at":"2026-11-01T10:00:05Z"}`, seq1))
	f.Add(event("u", `{"prediction_id":3,"is_fraud":"0.5","labeled_at":1793527205000}`, `""`))
	f.Add(event("d", "", seq1))
	f.Add([]byte(`{"op":"c","after":{"prediction_id":["x"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeCDCLabel(b, DefaultLabelColumns())
		if err == nil && l.PredictionID == "" {
			t.Fatalf("decoded a label without a prediction id from %q", b)
		}
	})
}
