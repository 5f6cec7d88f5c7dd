package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/tributary-ml/tributary/cmd/tributary/internal/train"
	"github.com/tributary-ml/tributary/libs/featurespec"
)

// trainCommand trains the example model.
func trainCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	example := fs.String("example", "examples/fraud", "example directory (features/ is read, models/ is written)")
	opt := train.DefaultOptions()
	fs.Uint64Var(&opt.Seed, "seed", opt.Seed, "random seed of the demo data")
	fs.IntVar(&opt.Sessions, "sessions", opt.Sessions, "user sessions simulated")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	models := filepath.Join(*example, "models")
	if _, err := train.Run(filepath.Join(*example, "features"), models, opt, stdout); err != nil {
		fmt.Fprintf(stderr, "train: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(models, train.ModelName))
	return 0
}

// featuresCommand: `tributary features validate DIR`.
func featuresCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "validate" {
		fmt.Fprintln(stderr, "usage: tributary features validate DIR")
		return 2
	}
	views, err := featurespec.LoadDir(args[1])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	n := 0
	for _, v := range views {
		n += len(v.Features)
		fmt.Fprintf(stdout, "%-22s %2d features  entity %s %v  source %s (%s)\n", v.Name, len(v.Features), v.Entity.Name, v.Entity.JoinKeys, v.Source.Topic, v.Source.Format)
	}
	fmt.Fprintf(stdout, "%d views, %d features: ok\n", len(views), n)
	return 0
}
