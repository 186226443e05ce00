// Command profiled is api-proxy that writes a CPU profile of its whole run, from start to
// SIGTERM or SIGINT, to the file named by $PROXYBENCH_CPUPROFILE: proxybench -cpuprofile
// runs it in place of api-proxy. It takes api-proxy's flags (not its subcommands).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/api-access-injector/api-access-injector/proxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "profiled api-proxy: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := proxy.DefaultConfig()
	fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
	cfg.BindFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	out := os.Getenv("PROXYBENCH_CPUPROFILE")
	if out == "" {
		return fmt.Errorf("PROXYBENCH_CPUPROFILE is not set: it names the profile to write")
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
