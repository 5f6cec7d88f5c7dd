package spine

import (
	"strings"
	"testing"
)

func TestNewTable(t *testing.T) {
	cols := []string{"user_id", EventTimestamp}
	kinds := []ColKind{KindString, KindTimestamp}
	tab, err := NewTable("mem", cols, kinds, []string{"u1", "5", "", "7"}, []bool{false, false, true, false}, []int64{5, 7})
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := tab.JoinKey(0, "user_id"); !ok || k != "u1" || tab.Len() != 2 || tab.EventMs(1) != 7 {
		t.Errorf("row 1: %q %v, %d rows", k, ok, tab.Len())
	}
	if _, ok := tab.JoinKey(1, "user_id"); ok {
		t.Error("row 2: a null join key is found")
	}
	for _, tc := range []struct {
		name  string
		cols  []string
		kinds []ColKind
		cells []string
		nulls []bool
		want  string
	}{
		{"kinds", cols, kinds[:1], []string{"u1", "5", "u2", "7"}, nil, "column kinds"},
		{"cells", cols, kinds, []string{"u1", "5"}, nil, "cells"},
		{"nulls", cols, kinds, []string{"u1", "5", "u2", "7"}, []bool{true}, "null flags"},
		{"no event_timestamp", []string{"a", "b"}, kinds, []string{"u1", "5", "u2", "7"}, nil, EventTimestamp},
		{"duplicate", []string{EventTimestamp, EventTimestamp}, kinds, []string{"u1", "5", "u2", "7"}, nil, "twice"},
	} {
		if _, err := NewTable("mem", tc.cols, tc.kinds, tc.cells, tc.nulls, []int64{5, 7}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one naming %q", tc.name, err, tc.want)
		}
	}
}
