package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/api-access-injector/api-access-injector/internal/rbac"
)

// runRBAC runs `api-access-injector rbac`; the work is in package rbac, which the kubectl
// plugin shares.
func runRBAC(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := rbac.Command(ctx, "api-access-injector rbac", args, os.Stdin, os.Stdout, os.Stderr)
	if errors.Is(err, rbac.ErrUsage) {
		return errUsage
	}
	return err
}
