package pointintime

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/tributary-ml/tributary/libs/featurespec"
)

// Feature is one requested feature, resolved.
type Feature struct {
	// Ref is "view:feature".
	Ref  string
	View *featurespec.View
	Spec featurespec.Feature
	// Column is the output column, "view__feature" (Feast's convention).
	Column string
}

// ColumnName is the output column of a view's feature: view__feature.
func ColumnName(view, feature string) string { return view + "__" + feature }

// ResolveRefs resolves feature refs, each "view:feature" or "view:*" (every
// feature of the view, in declaration order), against views. Errors name
// the ref. A feature requested twice is an error (its columns would clash).
func ResolveRefs(views []*featurespec.View, refs []string) ([]Feature, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("feature refs: none given; want view:feature or view:*")
	}
	byName := make(map[string]*featurespec.View, len(views))
	names := make([]string, 0, len(views))
	for _, v := range views {
		byName[v.Name] = v
		names = append(names, v.Name)
	}
	slices.Sort(names)
	var out []Feature
	seen := map[string]string{}
	add := func(ref string, v *featurespec.View, f featurespec.Feature) error {
		r := v.Name + ":" + f.Name
		if prev, ok := seen[r]; ok {
			return fmt.Errorf("feature ref %q: feature %s is already requested by %q", ref, r, prev)
		}
		seen[r] = ref
		out = append(out, Feature{Ref: r, View: v, Spec: f, Column: ColumnName(v.Name, f.Name)})
		return nil
	}
	for _, raw := range refs {
		ref := strings.TrimSpace(raw)
		vname, fname, ok := strings.Cut(ref, ":")
		if !ok || vname == "" || fname == "" || strings.Contains(fname, ":") {
			return nil, fmt.Errorf("feature ref %q: want view:feature or view:*", raw)
		}
		v := byName[vname]
		if v == nil {
			return nil, fmt.Errorf("feature ref %q: unknown feature view %q (views: %s)", raw, vname, strings.Join(names, ", "))
		}
		if fname == "*" {
			for _, f := range v.Features {
				if err := add(raw, v, f); err != nil {
					return nil, err
				}
			}
			continue
		}
		f, ok := v.Feature(fname)
		if !ok {
			return nil, fmt.Errorf("feature ref %q: feature view %q has no feature %q", raw, vname, fname)
		}
		if err := add(raw, v, f); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Shard selects the part of a job one worker computes: the spine rows
// whose shard key hashes to I modulo N. The shard key of a row is the
// entity id (join key values joined by ',', as tiles.EntityID) of the view
// of the first requested feature, hashed with 32-bit FNV-1a. Every row is
// in exactly one of shards 0..N-1, so the outputs of N shards concatenate
// to the whole training set (in another row order). The zero Shard (N 0)
// is the whole job.
type Shard struct{ I, N int }

// ParseShard parses "i/N".
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/N, for example 0/4", s)
	}
	sh := Shard{I: i, N: n}
	return sh, sh.Validate()
}

// Validate names what is wrong with the shard.
func (s Shard) Validate() error {
	if s.N == 0 && s.I == 0 {
		return nil
	}
	if s.N < 1 || s.I < 0 || s.I >= s.N {
		return fmt.Errorf("shard %d/%d: want 0 <= i < N", s.I, s.N)
	}
	return nil
}

// String renders the shard as i/N.
func (s Shard) String() string { return strconv.Itoa(s.I) + "/" + strconv.Itoa(max(1, s.N)) }

// Has reports whether the shard holds the rows of shard key id.
func (s Shard) Has(id string) bool {
	if s.N <= 1 {
		return true
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32()%uint32(s.N)) == s.I
}
