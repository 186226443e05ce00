package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/cliflag"
	"github.com/api-access-injector/api-access-injector/proxy"
)

// access is `api-proxy access`: it prints the access record of the api-proxy server in the
// same container, found through /proc unless --port says where it listens.
func access(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("api-proxy "+proxy.AccessCommand, flag.ContinueOnError)
	output := fs.String("o", "table", "The output format: table or json.")
	port := fs.Int("port", 0, "The port of the server's API listener. 0 reads it from the command line of the api-proxy server "+
		"running in this container.")
	address := fs.String("address", proxy.DefaultAddress, "The loopback address of the server's API listener, with --port.")
	timeout := fs.Duration("timeout", 10*time.Second, "How long to wait for the server's answer.")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: api-proxy %s [-o table|json] [--port=N]\n\n"+
			"Prints what the app did through the sidecar: each verb, resource and outcome with its count.\n"+
			"Run it in the sidecar: kubectl exec -c api-proxy <pod> -- /api-proxy %s -o json\n\n", proxy.AccessCommand, proxy.AccessCommand)
		cliflag.PrintDefaults(fs.Output(), fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: %s takes only flags", fs.Args(), proxy.AccessCommand)
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("-o %q: want table or json", *output)
	}
	addr := net.JoinHostPort(*address, strconv.Itoa(*port))
	if *port == 0 {
		var err error
		if addr, err = proxy.LocateServer("/proc"); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rec, err := proxy.FetchAccessRecord(ctx, addr)
	if err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rec)
	}
	return proxy.WriteAccessTable(stdout, rec)
}

// newLogger returns the sidecar's logger: JSON lines whose time is RFC 3339 in UTC, with
// milliseconds, as the webhook's.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 && a.Value.Kind() == slog.KindTime {
				a.Value = slog.StringValue(a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			}
			return a
		},
	}))
}
