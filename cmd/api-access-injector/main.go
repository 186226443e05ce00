// Command api-access-injector is the admission webhook that gives pods an api-proxy sidecar
// (subcommand webhook), and the same injection offline, for manifests (subcommand inject).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/api-access-injector/api-access-injector/internal/cliflag"
	"github.com/api-access-injector/api-access-injector/internal/version"
)

const usage = `api-access-injector gives pods local, credential-free access to the Kubernetes API
through an injected api-proxy sidecar.

Usage:
  api-access-injector webhook [flags]       serve the mutating admission webhook
  api-access-injector inject -f FILE|DIR|- [flags]
                                            inject manifests offline (--uninject takes it out)
  api-access-injector explain (NAME | TYPE/NAME | -f FILE) [flags]
                                            say whether a pod would be injected, and why
  api-access-injector rbac (NAME | TYPE/NAME | -f FILE) [flags]
                                            least-privilege RBAC from what the sidecars recorded
  api-access-injector version               print the version (also --version)

Run "api-access-injector COMMAND -h" for the flags of a command.
`

// errUsage reports a command-line mistake whose explanation was already printed.
var errUsage = errors.New("usage error")

func main() {
	if err := run(os.Args[1:]); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "webhook":
		return runWebhook(args[1:])
	case "inject":
		return runInject(args[1:], os.Stdin, os.Stdout, os.Stderr)
	case "explain":
		return runExplain(args[1:])
	case "rbac":
		return runRBAC(args[1:])
	case "version", "--version", "-version":
		fmt.Println(version.Get())
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// parseFlags parses a subcommand's flags, printing its usage on error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.Usage = cliflag.Usage(fs, "api-access-injector "+fs.Name()+" [flags]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}
