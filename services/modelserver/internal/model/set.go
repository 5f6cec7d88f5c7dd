package model

import (
	"sort"
	"time"
)

// Version is one loaded, warmed-up version of a model.
type Version struct {
	Number int
	Scorer Scorer
	// LoadedAt is when the version was loaded.
	LoadedAt time.Time
	// Fingerprint identifies the artifact files the version was loaded from.
	Fingerprint string
}

// Entry is a model with its loaded versions. It is immutable once published.
type Entry struct {
	Name   string
	Config *Config
	// Versions are the loaded versions by number.
	Versions map[int]*Version
	// Latest is the highest loaded version, served by default.
	Latest int
	// ConfigHash identifies the config.yaml the versions were built for.
	ConfigHash string
}

// Version returns a loaded version; v == 0 means the default (latest).
func (m *Entry) Version(v int) (*Version, bool) {
	if v == 0 {
		v = m.Latest
	}
	ver, ok := m.Versions[v]
	return ver, ok
}

// VersionNumbers lists the loaded versions in ascending order.
func (m *Entry) VersionNumbers() []int {
	out := make([]int, 0, len(m.Versions))
	for v := range m.Versions {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

// Set is the set of models served at one moment.
type Set struct {
	Models map[string]*Entry
	// Errors are the latest load errors by model name (a model may be
	// serving an older version while its newest artifact is refused).
	Errors map[string]string
}

// Get returns a model by name.
func (s *Set) Get(name string) (*Entry, bool) {
	m, ok := s.Models[name]
	return m, ok
}

// Names lists the served models in order.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.Models))
	for n := range s.Models {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
