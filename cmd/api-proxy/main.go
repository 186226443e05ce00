// Command api-proxy is the sidecar that serves the Kubernetes API unauthenticated on the pod's
// loopback, authenticating to the API server with the pod's projected service-account token.
// It takes kubectl proxy's flags; run it with -h for the list. See package proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/api-access-injector/api-access-injector/internal/cliflag"
	"github.com/api-access-injector/api-access-injector/internal/version"
	"github.com/api-access-injector/api-access-injector/proxy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "api-proxy: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == proxy.KubeconfigCommand {
		return writeKubeconfig(args[1:])
	}
	if len(args) > 0 && args[0] == proxy.AccessCommand {
		return access(args[1:], os.Stdout)
	}
	cfg := proxy.DefaultConfig()
	fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: api-proxy [flags]\n       api-proxy %s [flags]\n       api-proxy %s [flags]\n\n"+
			"Serves the Kubernetes API on the pod's loopback, authenticated with the pod's service-account token.\n"+
			"See api-proxy %s -h for writing the app containers' kubeconfig without serving,\n"+
			"and api-proxy %s -h for printing what the app did through the sidecar.\n\n",
			proxy.KubeconfigCommand, proxy.AccessCommand, proxy.KubeconfigCommand, proxy.AccessCommand)
		cliflag.PrintDefaults(fs.Output(), fs)
	}
	cfg.BindFlags(fs)
	printVersion := fs.Bool("version", false, "Print the version and exit.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: api-proxy takes only flags", fs.Args())
	}
	if *printVersion {
		fmt.Println(version.Get())
		return nil
	}
	cfg.Logger = newLogger(os.Stderr)
	cfg.Logger.Info("starting api-proxy", "version", version.Get(), "go", runtime.Version())

	// The kubelet stops a container with SIGTERM; Ctrl-C stops it by hand.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// writeKubeconfig is `api-proxy write-kubeconfig`: it writes the app containers' kubeconfig
// and exits, for pods whose sidecar is not api-proxy (the injector's kubectl mode).
func writeKubeconfig(args []string) error {
	cfg := proxy.KubeconfigConfig{Port: proxy.DefaultPort}
	fs := flag.NewFlagSet("api-proxy "+proxy.KubeconfigCommand, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: api-proxy %s --kubeconfig-out=FILE --namespace=NS [--port=N]\n\n"+
			"Writes a kubeconfig whose only cluster is http://127.0.0.1:<port> and whose namespace is NS, then exits.\n\n",
			proxy.KubeconfigCommand)
		cliflag.PrintDefaults(fs.Output(), fs)
	}
	cfg.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: %s takes only flags", fs.Args(), proxy.KubeconfigCommand)
	}
	return cfg.Write()
}
