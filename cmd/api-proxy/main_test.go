package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/api-access-injector/api-access-injector/internal/version"
)

// TestWriteKubeconfigCommand runs `api-proxy write-kubeconfig` as the kubeconfig init
// container of kubectl mode does, and checks what client-go loads from the file.
func TestWriteKubeconfigCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "kubeconfig")
	if err := run([]string{"write-kubeconfig", "--kubeconfig-out=" + out, "--port=9001", "--namespace=team-a"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.Clusters[ctx.Cluster] == nil {
		t.Fatalf("no current context and cluster:\n%s", data)
	}
	if got := cfg.Clusters[ctx.Cluster].Server + " " + ctx.Namespace; got != "http://127.0.0.1:9001 team-a" {
		t.Errorf("server and namespace = %q, want http://127.0.0.1:9001 team-a", got)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"write-kubeconfig", "--namespace=team-a"}, "--kubeconfig-out is empty"},
		{[]string{"write-kubeconfig", "--kubeconfig-out=" + out, "--namespace=team-a", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"write-kubeconfig", "--kubeconfig-out=" + out, "--namespace=$(POD_NAMESPACE)"}, `namespace "$(POD_NAMESPACE)" is not a namespace name`},
		{[]string{"serve"}, `unexpected arguments ["serve"]: api-proxy takes only flags`},
	} {
		if err := run(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestHelpShowsDoubleDashFlags checks that --help lists the flags as users type them.
func TestHelpShowsDoubleDashFlags(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"write-kubeconfig", "--help"}} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		runErr := run(args)
		os.Stderr = stderr
		w.Close()
		out, _ := io.ReadAll(r)
		if runErr != nil {
			t.Fatalf("run(%q) = %v, want nil", args, runErr)
		}
		if !strings.Contains(string(out), "  --port") || strings.Contains(string(out), "\n  -port") {
			t.Errorf("run(%q) help does not list --port as --port:\n%s", args, out)
		}
	}
}

// captureOutput runs f with os.Stdout and os.Stderr redirected, and returns what it wrote to
// each.
func captureOutput(t *testing.T, f func()) (stdout, stderr string) {
	t.Helper()
	capture := func(target **os.File) func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		saved := *target
		*target = w
		out := make(chan string, 1)
		go func() { b, _ := io.ReadAll(r); out <- string(b) }()
		return func() string {
			*target = saved
			if err := w.Close(); err != nil {
				t.Error(err)
			}
			return <-out
		}
	}
	endStdout, endStderr := capture(&os.Stdout), capture(&os.Stderr)
	f()
	return endStdout(), endStderr()
}

// TestVersion: --version prints the stamped version alone and exits without serving.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}} {
		var err error
		stdout, stderr := captureOutput(t, func() { err = run(args) })
		if err != nil {
			t.Fatalf("run(%q) = %v", args, err)
		}
		if diff := cmp.Diff(version.Get()+"\n", stdout); diff != "" || stderr != "" {
			t.Errorf("run(%q): stdout (-want +got):\n%s\nstderr %q, want none", args, diff, stderr)
		}
	}
}

// TestStartLogNamesTheVersion: the first log line says which version runs, even when the
// proxy then fails to start (here, with no service-account files).
func TestStartLogNamesTheVersion(t *testing.T) {
	var err error
	_, stderr := captureOutput(t, func() {
		err = run([]string{"--server=https://127.0.0.1:6443", "--serviceaccount-dir=" + t.TempDir()})
	})
	if err == nil {
		t.Fatal("run without a token started serving")
	}
	first, _, _ := strings.Cut(stderr, "\n")
	var line struct{ Level, Msg, Version string }
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatalf("first log line %q: %v", first, err)
	}
	if diff := cmp.Diff(struct{ Level, Msg, Version string }{"INFO", "starting api-proxy", version.Get()}, line); diff != "" {
		t.Errorf("first log line (-want +got):\n%s", diff)
	}
}
