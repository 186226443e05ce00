package rbac

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
	"github.com/api-access-injector/api-access-injector/internal/cliflag"
)

// ErrUsage reports a command-line mistake whose explanation was already printed.
var ErrUsage = errors.New("usage error")

// Command runs `rbac` with its arguments: the `api-access-injector rbac` command and the
// `kubectl apiaccess rbac` plugin both call it. prog is how the user invoked it.
func Command(ctx context.Context, prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rbac", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		file, namespace, output, kubeconfig, kubeContext string
		compare                                          bool
		timeout                                          time.Duration
	)
	for _, name := range []string{"filename", "f"} {
		fs.StringVar(&file, name, "", "Read the records in `FILE` (\"-\" for standard input), what api-proxy access -o json printed (one or more), instead of asking the pods' sidecars.")
	}
	for _, name := range []string{"namespace", "n"} {
		fs.StringVar(&namespace, name, "", "Namespace of the pod or workload. Default: the kubeconfig context's.")
	}
	for _, name := range []string{"output", "o"} {
		fs.StringVar(&output, name, "yaml", "Output `format`: yaml (objects to apply, the rest as comments), or json (an object: .objects is a v1 List to apply, .serviceAccounts the details).")
	}
	fs.BoolVar(&compare, "compare", false, "Also ask the API server what the ServiceAccount may do today that the app never used (needs impersonate on serviceaccounts).")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path of the kubeconfig file. Default: $KUBECONFIG, else ~/.kube/config, else in-cluster.")
	fs.StringVar(&kubeContext, "context", "", "The kubeconfig context to use.")
	fs.DurationVar(&timeout, "timeout", time.Minute, "Give up after this long.")
	synopsis := prog + " (NAME | TYPE/NAME | -f FILE) [flags]\n\n" +
		"Prints the least-privilege RBAC (a Role, a ClusterRole only where needed, and their bindings to the ServiceAccount)\n" +
		"for what the api-proxy sidecar of a pod, or of every pod of a workload (deployment, statefulset, daemonset, replicaset,\n" +
		"job), recorded, ready for kubectl apply -f -. Requests the API server denied are listed as rules in comments.\n" +
		"Reading a sidecar runs /api-proxy access -o json in it, as kubectl exec does (needs create on pods/exec).\n\n" +
		"Examples:\n  " + prog + " -n shop deploy/web\n  " + prog + " -n shop web-7d9c5-abcde --compare\n" +
		"  kubectl exec -n shop web-7d9c5-abcde -c api-proxy -- /api-proxy access -o json > web.json; " + prog + " -f web.json"
	fs.Usage = cliflag.Usage(fs, synopsis)
	positional, err := cliflag.ParseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	if output != "yaml" && output != "json" {
		fmt.Fprintf(stderr, "--output: %q is not one of yaml, json\n", output)
		return ErrUsage
	}
	if (file == "") == (len(positional) == 0) || len(positional) > 1 {
		fmt.Fprintln(stderr, "give exactly one of NAME, TYPE/NAME or -f FILE")
		fs.Usage()
		return ErrUsage
	}

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var records []accessrecord.Record
	if file != "" {
		in, source := stdin, "standard input"
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer func() { _ = f.Close() }() // only read
			in, source = f, file
		}
		var err error
		if records, err = accessrecord.Decode(in, source); err != nil {
			return err
		}
	}

	var cfg *rest.Config
	if file == "" || compare {
		loading := clientcmd.NewDefaultClientConfigLoadingRules()
		loading.ExplicitPath = kubeconfig
		kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
		var err error
		if cfg, err = kc.ClientConfig(); err != nil {
			return fmt.Errorf("finding the API server: %w", err)
		}
		if namespace == "" {
			if namespace, _, err = kc.Namespace(); err != nil {
				return fmt.Errorf("finding the namespace: %w", err)
			}
		}
	}
	if file == "" {
		r, err := NewReader(cfg)
		if err != nil {
			return err
		}
		pods, err := r.Pods(rctx, namespace, positional[0])
		if err != nil {
			return err
		}
		recs, skipped, err := r.Records(rctx, pods)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			fmt.Fprintf(stderr, "warning: skipped: %v\n", s)
		}
		records = recs
	}

	suggestions := Build(records)
	if compare {
		for i := range suggestions {
			if err := Compare(rctx, cfg, &suggestions[i]); err != nil {
				return err
			}
			for _, n := range suggestions[i].Unused.Notes {
				if !suggestions[i].Unused.Asked {
					fmt.Fprintf(stderr, "warning: --compare: %s\n", n)
				}
			}
		}
	}
	if output == "json" {
		return WriteJSON(stdout, suggestions)
	}
	return WriteYAML(stdout, suggestions)
}
