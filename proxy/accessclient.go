package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

// AccessCommand is the subcommand of api-proxy that prints the access record of the sidecar
// running in the same container: `kubectl exec -c api-proxy <pod> -- /api-proxy access`.
const AccessCommand = "access"

// FetchAccessRecord reads the access record from the proxy listening on addr (host:port).
func FetchAccessRecord(ctx context.Context, addr string) (*accessrecord.Record, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+AccessRecordPath, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the access record from %s: %w", addr, err)
	}
	// The transport of its own: no HTTP_PROXY, which would take the request off loopback.
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the access record: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // only read
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the access record from %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the access record from %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	var rec accessrecord.Record
	if err := json.Unmarshal(body, &rec); err != nil {
		return nil, fmt.Errorf("decoding the access record from %s: %w", addr, err)
	}
	if rec.APIVersion != accessrecord.APIVersion || rec.Kind != accessrecord.Kind {
		return nil, fmt.Errorf("%s answered %s with apiVersion %q kind %q, not an api-proxy access record", addr, AccessRecordPath, rec.APIVersion, rec.Kind)
	}
	return &rec, nil
}

// WriteAccessTable writes the record for a person: one line per tuple.
func WriteAccessTable(w io.Writer, rec *accessrecord.Record) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "# pod %s/%s  serviceAccount %s  since %s\n", rec.Namespace, rec.Pod, rec.ServiceAccount, rec.Since.Format(time.RFC3339))
	fmt.Fprintln(tw, "OUTCOME\tVERB\tAPIGROUP\tRESOURCE\tNAMESPACE\tCOUNT\tLAST SEEN")
	for _, r := range rec.Requests {
		res := r.Resource
		if r.Subresource != "" {
			res += "/" + r.Subresource
		}
		if r.NonResourceURL != "" {
			res = r.NonResourceURL
		}
		group, ns := r.APIGroup, r.Namespace
		switch {
		case r.NonResourceURL != "":
			group = "-"
		case group == "":
			group = "core"
		}
		if ns == "" {
			ns = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Outcome, r.Verb, group, res, ns, r.Count, r.LastSeen.Format(time.RFC3339))
	}
	if rec.Truncated {
		fmt.Fprintf(tw, "# and %d more requests of tuples beyond the %d the record keeps\n", rec.OtherCount, MaxAccessTuples)
	}
	return tw.Flush()
}

// LocateServer finds the address of the API listener of the api-proxy server that runs in
// the same container (or pod, with a shared process namespace): the process running the same
// executable as this one, found under procDir (/proc), whose command line is the server's.
// Its flags are read with the server's own flag definitions, so the subcommand needs none in
// an injected sidecar. A listener on all addresses is reached on loopback.
func LocateServer(procDir string) (string, error) {
	self, err := os.Stat(filepath.Join(procDir, "self", "exe"))
	if err != nil {
		return "", fmt.Errorf("finding the api-proxy server: %w", err)
	}
	selfPid := ""
	if l, err := os.Readlink(filepath.Join(procDir, "self")); err == nil {
		selfPid = l
	}
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return "", fmt.Errorf("finding the api-proxy server: %w", err)
	}
	var found []string
	for _, e := range entries {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil || pid == selfPid {
			continue
		}
		fi, err := os.Stat(filepath.Join(procDir, pid, "exe"))
		if err != nil || !os.SameFile(fi, self) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(procDir, pid, "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		addr, ok := serverAddress(args[1:])
		if ok && !slices.Contains(found, addr) {
			found = append(found, addr)
		}
	}
	switch len(found) {
	case 0:
		return "", errors.New("found no api-proxy server running in this container; give its port with --port")
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("found api-proxy servers on %s; choose one with --port", strings.Join(found, ", "))
}

// serverAddress returns the loopback address to reach the API listener of a server started
// with args; false if args are not a server's (a subcommand, bad flags).
func serverAddress(args []string) (string, bool) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return "", false // a subcommand
	}
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("api-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.BindFlags(fs)
	if fs.Parse(args) != nil || cfg.Port == 0 {
		return "", false
	}
	return net.JoinHostPort(loopbackFor(cfg.Address), strconv.Itoa(cfg.Port)), true
}

// loopbackFor is the address to dial for a listener on address: loopback for a wildcard.
func loopbackFor(address string) string {
	ip := net.ParseIP(address)
	switch {
	case ip == nil, ip.Equal(net.IPv4zero):
		return "127.0.0.1"
	case ip.Equal(net.IPv6unspecified):
		return "::1"
	}
	return address
}
