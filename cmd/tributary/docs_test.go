package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tributary-ml/tributary/libs/config"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the flags")

// configurationReference renders every service's flags as markdown.
func configurationReference() string {
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from the services' flags by `go test ./cmd/tributary -run TestConfigurationReference -update`;\n")
	b.WriteString("a test fails when it and the code disagree.\n\n")
	b.WriteString("Every flag has an environment override `TRIBUTARY_<FLAG>` (upper case, `-` → `_`); a flag given\n")
	b.WriteString("on the command line wins. A service refuses to start on an invalid value and names the field.\n")
	b.WriteString("`tributary <service> -h` (or the service binary with `-h`) prints the same list.\n")
	for _, c := range services() {
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		c.Register(fs)
		fmt.Fprintf(&b, "\n## %s\n\n%s.\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n", c.Name, c.Usage)
		fs.VisitAll(func(f *flag.Flag) {
			def := "`" + f.DefValue + "`"
			if f.DefValue == "" {
				def = "(empty)"
			}
			fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, config.EnvName(f.Name), strings.ReplaceAll(def, "|", "\\|"), strings.ReplaceAll(f.Usage, "|", "\\|"))
		})
	}
	return b.String()
}

func TestConfigurationReference(t *testing.T) {
	path := filepath.Join(repoRoot, "docs", "configuration.md")
	want := configurationReference()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/configuration.md is out of date with the flags: run `go test ./cmd/tributary -run TestConfigurationReference -update` and commit")
	}
}
