// Command kubectl-apiaccess is the kubectl plugin of api-access-injector: installed on the
// PATH, it answers `kubectl apiaccess explain ...` and `kubectl apiaccess rbac ...` (https://kubernetes.io/docs/tasks/extend-kubectl/kubectl-plugins/).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/api-access-injector/api-access-injector/internal/explain"
	"github.com/api-access-injector/api-access-injector/internal/version"
)

const usage = `kubectl apiaccess: api-access-injector from kubectl.

Usage:
  kubectl apiaccess explain (NAME | TYPE/NAME | -f FILE) [flags]
      say whether a pod or workload would get the api-proxy sidecar, and why
  kubectl apiaccess rbac (NAME | TYPE/NAME | -f FILE) [flags]
      least-privilege RBAC for what the sidecars of a pod or workload recorded
  kubectl apiaccess version
      print the version

Run "kubectl apiaccess COMMAND --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	switch {
	case err == nil:
	case errors.Is(err, explain.ErrProblems):
		os.Exit(2)
	case errors.Is(err, explain.ErrUsage):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return explain.ErrUsage
	}
	switch args[0] {
	case "explain":
		return explain.Command(ctx, "kubectl apiaccess explain", args[1:], os.Stdin, os.Stdout, os.Stderr)
	case "rbac":
		return runRBAC(ctx, args[1:])
	case "version", "--version":
		fmt.Println(version.Get())
		return nil
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", args[0], usage)
	return explain.ErrUsage
}
