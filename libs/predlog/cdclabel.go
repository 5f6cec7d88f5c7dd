package predlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-ml/tributary/libs/cdc"
)

// LabelColumns maps a labels table's columns onto a label: the prediction
// id, the outcome (boolean or number, 1 / true for the positive class) and
// when it was observed (timestamptz, timestamp or epoch milliseconds).
type LabelColumns struct {
	ID, Label, Time string
}

// DefaultLabelColumns fit the fraud example's public.labels(prediction_id,
// txn_id, user_id, is_fraud, labeled_at).
func DefaultLabelColumns() LabelColumns {
	return LabelColumns{ID: "prediction_id", Label: "is_fraud", Time: "labeled_at"}
}

// String renders the mapping as ParseLabelColumns reads it.
func (c LabelColumns) String() string {
	return "id=" + c.ID + ",label=" + c.Label + ",time=" + c.Time
}

// ParseLabelColumns reads "id=<col>,label=<col>,time=<col>"; a role left
// out keeps its default, an empty time column means "the commit time".
func ParseLabelColumns(s string) (LabelColumns, error) {
	c := DefaultLabelColumns()
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		role, col, ok := strings.Cut(item, "=")
		role, col = strings.TrimSpace(role), strings.TrimSpace(col)
		if !ok {
			return c, fmt.Errorf("%q is not role=column", item)
		}
		switch role {
		case "id":
			c.ID = col
		case "label":
			c.Label = col
		case "time":
			c.Time = col
		default:
			return c, fmt.Errorf("%q: role %q is not id, label or time", item, role)
		}
		if col == "" && role != "time" {
			return c, fmt.Errorf("%q: the %s column is empty", item, role)
		}
	}
	return c, nil
}

// CDCLabel is a label read from a change event of a labels table, with
// the event's operation and position (for deduplication by LSN).
type CDCLabel struct {
	Label
	// Op is the change's operation (c, r or u).
	Op string
	// Pos is the change's position; zero for snapshot reads and events
	// without a source.sequence.
	Pos cdc.Position
}

// ErrNotALabel marks change events that carry no label (deletes, truncates,
// tombstones): skipped without counting them as invalid.
var ErrNotALabel = errors.New("no label in this change event")

// DecodeCDCLabel reads a label from a Debezium change event of a labels
// table. Inserts, snapshot reads and updates carry one in `after`; an
// update counts only if its prediction has no label yet (the aggregator
// keeps the first), deletes do not retract one.
func DecodeCDCLabel(b []byte, cols LabelColumns) (CDCLabel, error) {
	if len(b) == 0 {
		return CDCLabel{}, ErrNotALabel
	}
	var env cdc.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return CDCLabel{}, fmt.Errorf("decode change event: %w", err)
	}
	l := CDCLabel{Op: env.Op}
	switch env.Op {
	case cdc.OpCreate, cdc.OpRead, cdc.OpUpdate:
	case cdc.OpDelete, cdc.OpTruncate:
		return l, ErrNotALabel
	default:
		return l, fmt.Errorf("change event: op %q is not c, r, u, d or t", env.Op)
	}
	if env.After == nil {
		return l, fmt.Errorf("change event: op %q without after", env.Op)
	}
	if env.Op != cdc.OpRead && env.Source.Sequence != "" {
		pos, err := cdc.ParseSequence(env.Source.Sequence)
		if err != nil {
			return l, fmt.Errorf("change event: %w", err)
		}
		l.Pos = pos
	}
	var err error
	if l.PredictionID, err = idValue(env.After[cols.ID]); err != nil {
		return l, fmt.Errorf("after.%s: %w", cols.ID, err)
	}
	if l.Value, err = labelValue(env.After[cols.Label]); err != nil {
		return l, fmt.Errorf("after.%s: %w", cols.Label, err)
	}
	l.TimeMs = env.TsMs
	if l.TimeMs == 0 {
		l.TimeMs = env.Source.TsMs
	}
	if cols.Time != "" {
		if v, ok := env.After[cols.Time]; ok && v != nil {
			if l.TimeMs, err = timeValue(v); err != nil {
				return l, fmt.Errorf("after.%s: %w", cols.Time, err)
			}
		}
	}
	return l, nil
}

func idValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return "", errors.New("empty prediction id")
		}
		return x, nil
	case float64: // an integer key column
		if x != float64(int64(x)) {
			return "", fmt.Errorf("prediction id %v is not an integer", x)
		}
		return strconv.FormatInt(int64(x), 10), nil
	case nil:
		return "", errors.New("missing (null) prediction id")
	}
	return "", fmt.Errorf("prediction id of type %T", v)
}

// labelValue accepts booleans, numbers, and numbers or booleans in strings
// (ingest writes numeric columns as strings to keep their precision).
func labelValue(v any) (float64, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case float64:
		return x, nil
	case string:
		switch strings.ToLower(x) {
		case "t", "true":
			return 1, nil
		case "f", "false":
			return 0, nil
		}
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, fmt.Errorf("label %q is not a boolean or a number", x)
		}
		return f, nil
	case nil:
		return 0, errors.New("missing (null) label")
	}
	return 0, fmt.Errorf("label of type %T", v)
}

// timeValue accepts ISO-8601 strings (timestamptz in UTC, timestamp
// without a zone read as UTC) and epoch milliseconds.
func timeValue(v any) (int64, error) {
	switch x := v.(type) {
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t.UnixMilli(), nil
			}
		}
		return 0, fmt.Errorf("time %q is not ISO-8601", x)
	case float64:
		return int64(x), nil
	}
	return 0, fmt.Errorf("time of type %T", v)
}
