package train

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The committed example model must be exactly what training produces, so it
// is never edited by hand and always matches the feature definitions.
func TestCommittedModelIsReproducible(t *testing.T) {
	root := filepath.Join("..", "..", "..", "..", "examples", "fraud")
	out := t.TempDir()
	res, err := Run(filepath.Join(root, "features"), out, DefaultOptions(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.AUC < 0.8 {
		t.Errorf("holdout AUC %.3f: the example model should separate the demo's fraud clearly", res.AUC)
	}
	for _, f := range []string{"config.yaml", "1/model.json", "1/baseline.json"} {
		want, err := os.ReadFile(filepath.Join(out, ModelName, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, "models", ModelName, f))
		if err != nil {
			t.Fatalf("%v: run `go run ./cmd/tributary train` and commit the result", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("examples/fraud/models/%s/%s differs from what training produces: run `go run ./cmd/tributary train` and commit", ModelName, f)
		}
	}
}
