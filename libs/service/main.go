package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/tributary-ml/tributary/libs/config"
)

// Command is a service as started from a command line: the service binaries
// and `tributary <service>` both run it through Main, so they share flags,
// environment overrides and exit behaviour.
type Command struct {
	Name string
	// Usage is a one-line description shown by -h.
	Usage string
	// Register adds the service's flags (defaults already set).
	Register func(fs *flag.FlagSet)
	// Run runs the service until ctx ends.
	Run func(ctx context.Context) error
}

// Main parses args (flags, then TRIBUTARY_* overrides), runs the command
// until SIGINT or SIGTERM and returns the process exit code.
func Main(args []string, stderr io.Writer, cmd Command) int {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [flags]\n\n%s\n\nEvery flag can also be set with TRIBUTARY_<FLAG> (upper case, - as _).\n\n", cmd.Name, cmd.Usage)
		fs.PrintDefaults()
	}
	cmd.Register(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v\n", cmd.Name, err)
		return 2
	}
	ctx, stop := SignalContext()
	defer stop()
	if err := cmd.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd.Name, err)
		return 1
	}
	return 0
}

// Runner is a built service, ready to run until its context ends. Close
// releases it when it will not run (safe to call at any time; after Run
// started it does nothing, Run releases what the service holds).
type Runner interface {
	Run(ctx context.Context) error
	Close() error
}

// NewCommand makes the command line of a service: register adds its flags to
// the configuration that build reads when the command runs.
func NewCommand[S Runner](name, usage string, register func(*flag.FlagSet), build func(context.Context) (S, error)) Command {
	return Command{Name: name, Usage: usage, Register: register, Run: func(ctx context.Context) error {
		s, err := build(ctx)
		if err != nil {
			return err
		}
		return s.Run(ctx)
	}}
}
