package main

import (
	"context"
	"errors"
	"os"

	"github.com/api-access-injector/api-access-injector/internal/explain"
)

// runExplain runs `api-access-injector explain`; the work is in package explain, which the
// kubectl plugin shares.
func runExplain(args []string) error {
	err := explain.Command(context.Background(), "api-access-injector explain", args, os.Stdin, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, explain.ErrUsage):
		return errUsage
	case errors.Is(err, explain.ErrProblems):
		os.Exit(2) // the report is printed; the exit code tells scripts
	}
	return err
}
