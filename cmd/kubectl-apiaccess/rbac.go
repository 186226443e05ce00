package main

import (
	"context"
	"errors"
	"os"

	"github.com/api-access-injector/api-access-injector/internal/explain"
	"github.com/api-access-injector/api-access-injector/internal/rbac"
)

// runRBAC runs `kubectl apiaccess rbac`; the work is in package rbac, which
// `api-access-injector rbac` shares.
func runRBAC(ctx context.Context, args []string) error {
	err := rbac.Command(ctx, "kubectl apiaccess rbac", args, os.Stdin, os.Stdout, os.Stderr)
	if errors.Is(err, rbac.ErrUsage) {
		return explain.ErrUsage // main exits 1 without printing it again
	}
	return err
}
