package check

import "testing"

func TestRender(t *testing.T) {
	all := renderAll(t)
	for _, dir := range sortedKeys(all) {
		r := all[dir]
		t.Logf("%s: %d deployments, %d statefulsets, %d services, %d configmaps, %d topics", dir, len(r.deployments), len(r.statefulSets), len(r.services), len(r.configMaps), len(r.topics))
	}
}
