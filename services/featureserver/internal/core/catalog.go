package core

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/tributary-ml/tributary/libs/featurespec"
)

// View is a feature view prepared for serving.
type View struct {
	Spec     *featurespec.View
	MaxAgeMs int64
	features map[string]int
}

// Feature returns the index of the named feature in Spec.Features.
func (v *View) Feature(name string) (int, bool) {
	i, ok := v.features[name]
	return i, ok
}

// Views is an immutable set of feature views.
type Views struct {
	byName map[string]*View
	sorted []*View
}

// NewViews indexes views; later duplicates of a name replace earlier ones
// (featurespec.LoadDir already rejects duplicates).
func NewViews(specs []*featurespec.View) *Views {
	vs := &Views{byName: make(map[string]*View, len(specs))}
	for _, s := range specs {
		v := &View{Spec: s, MaxAgeMs: time.Duration(s.MaxAge).Milliseconds(), features: make(map[string]int, len(s.Features))}
		for i, f := range s.Features {
			v.features[f.Name] = i
		}
		vs.byName[s.Name] = v
	}
	for _, v := range vs.byName {
		vs.sorted = append(vs.sorted, v)
	}
	sort.Slice(vs.sorted, func(i, j int) bool { return vs.sorted[i].Spec.Name < vs.sorted[j].Spec.Name })
	return vs
}

// Get returns the named view.
func (vs *Views) Get(name string) (*View, bool) {
	v, ok := vs.byName[name]
	return v, ok
}

// Spec returns the named view's spec, or nil.
func (vs *Views) Spec(name string) *featurespec.View {
	if v, ok := vs.byName[name]; ok {
		return v.Spec
	}
	return nil
}

// All returns the views sorted by name.
func (vs *Views) All() []*View { return vs.sorted }

// Catalog holds the current feature views; readers never block a reload.
type Catalog struct {
	cur atomic.Pointer[Views]
}

// NewCatalog returns a catalog serving specs.
func NewCatalog(specs []*featurespec.View) *Catalog {
	c := &Catalog{}
	c.Set(specs)
	return c
}

// Set replaces the served views.
func (c *Catalog) Set(specs []*featurespec.View) { c.cur.Store(NewViews(specs)) }

// Views returns the current views.
func (c *Catalog) Views() *Views { return c.cur.Load() }
