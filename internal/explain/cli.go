package explain

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/api-access-injector/api-access-injector/internal/cliflag"
)

// ErrUsage reports a command-line mistake whose explanation was already printed.
var ErrUsage = errors.New("usage error")

// ErrProblems is returned by Command when a report lists problems, so that scripts can tell.
var ErrProblems = errors.New("problems found")

// Command runs `explain` with its arguments: the `api-access-injector explain` command and
// the `kubectl apiaccess explain` plugin both call it. prog is how the user invoked it.
func Command(ctx context.Context, prog string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		file, namespace, output, kubeconfig, kubeContext, webhookConfig string
		expiry, timeout                                                 time.Duration
	)
	for _, name := range []string{"filename", "f"} {
		fs.StringVar(&file, name, "", "Explain the pods and workloads of this YAML file (\"-\" for standard input) instead of an object in the cluster.")
	}
	for _, name := range []string{"namespace", "n"} {
		fs.StringVar(&namespace, name, "", "Namespace of the object, or of a file's objects that name none. Default: the kubeconfig context's.")
	}
	for _, name := range []string{"output", "o"} {
		fs.StringVar(&output, name, "text", "Output `format`: text, or json (a JSON array of reports, one per object).")
	}
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path of the kubeconfig file. Default: $KUBECONFIG, else ~/.kube/config, else in-cluster.")
	fs.StringVar(&kubeContext, "context", "", "The kubeconfig context to use.")
	fs.StringVar(&webhookConfig, "webhook-config", "", "Name of the injector's MutatingWebhookConfiguration. Default: the one whose entries are named *.inject.apiaccess.io.")
	fs.DurationVar(&expiry, "expiry-warning", 7*24*time.Hour, "Report a certificate that expires sooner than this.")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "Give up after this long.")
	synopsis := prog + " (NAME | TYPE/NAME | -f FILE) [flags]\n\n" +
		"Says whether a pod, or the pods of a workload (deployment, statefulset, daemonset, replicaset, job, cronjob),\n" +
		"would get the api-proxy sidecar if created now, and why; what the injection changes (a server-side dry-run);\n" +
		"whether the webhook can be called; and, for a pod that exists, whether it was injected and its sidecar is ready.\n" +
		"Exits 1 on an error, 2 when problems are found.\n\n" +
		"Examples:\n  " + prog + " -n shop deploy/web\n  " + prog + " -n shop web-7d9c5-abcde -o json\n  " + prog + " -f deployment.yaml"
	fs.Usage = cliflag.Usage(fs, synopsis)
	positional, err := cliflag.ParseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return ErrUsage
	}
	if output != "text" && output != "json" {
		fmt.Fprintf(stderr, "--output: %q is not one of text, json\n", output)
		return ErrUsage
	}
	if (file == "") == (len(positional) == 0) || len(positional) > 1 {
		fmt.Fprintln(stderr, "give exactly one of NAME, TYPE/NAME or -f FILE")
		fs.Usage()
		return ErrUsage
	}

	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	loading.ExplicitPath = kubeconfig
	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	cfg, err := kc.ClientConfig()
	if err != nil {
		return fmt.Errorf("finding the API server: %w", err)
	}
	if namespace == "" {
		if namespace, _, err = kc.Namespace(); err != nil {
			return fmt.Errorf("finding the namespace: %w", err)
		}
	}
	e, err := New(cfg, Options{WebhookConfiguration: webhookConfig, ExpiryWarning: expiry})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var targets []Target
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
		if targets, err = FileTargets(in, source, namespace); err != nil {
			return err
		}
	} else {
		t, err := e.ClusterTarget(rctx, namespace, positional[0])
		if err != nil {
			return err
		}
		targets = []Target{t}
	}
	reports := []*Report{}
	problems := false
	for _, t := range targets {
		r, err := e.Explain(rctx, t)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", t.Object.Kind, t.Object.Namespace, t.Object.Name, err)
		}
		reports = append(reports, r)
		problems = problems || len(r.Problems) > 0
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		for i, r := range reports {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			if err := Print(stdout, r); err != nil {
				return err
			}
		}
	}
	if problems {
		return ErrProblems
	}
	return nil
}
