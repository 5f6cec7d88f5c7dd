package modelserver

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/tributary-ml/tributary/services/modelserver/internal/repository"
)

// indexEntry is one model in GET /v2/repository/index (Triton's repository
// index shape, plus the versions served and the latest load error).
type indexEntry struct {
	Name     string   `json:"name"`
	Version  string   `json:"version,omitempty"`
	Versions []string `json:"versions,omitempty"`
	State    string   `json:"state"`
	Reason   string   `json:"reason,omitempty"`
}

func repositoryIndex(repo *repository.Repository) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		snap := repo.Snapshot()
		seen := map[string]bool{}
		out := []indexEntry{}
		for _, name := range snap.Names() {
			m, _ := snap.Get(name)
			e := indexEntry{Name: name, Version: strconv.Itoa(m.Latest), State: "READY", Reason: snap.Errors[name]}
			for _, v := range m.VersionNumbers() {
				e.Versions = append(e.Versions, strconv.Itoa(v))
			}
			seen[name] = true
			out = append(out, e)
		}
		for name, msg := range snap.Errors {
			if !seen[name] {
				out = append(out, indexEntry{Name: name, State: "UNAVAILABLE", Reason: msg})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}
