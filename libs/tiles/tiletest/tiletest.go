// Package tiletest compares sets of tiles for tests.
package tiletest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/tributary-ml/tributary/libs/tiles"
)

// Diff compares two tile sets (key → tile) by their JSON: nil when they
// are equal, else an error counting the tiles that differ (missing and
// extra ones included) and showing the first three.
func Diff(want, got map[string]*tiles.Tile) error {
	keys := make([]string, 0, len(want)+len(got))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var bad []string
	for _, k := range keys {
		wb, _ := json.Marshal(want[k])
		gb, _ := json.Marshal(got[k])
		if string(wb) != string(gb) {
			bad = append(bad, fmt.Sprintf("tile %s:\n  want %s\n  got  %s", k, wb, gb))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d tiles differ:\n%s", len(bad), len(keys), strings.Join(bad[:min(3, len(bad))], "\n"))
}
