package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
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
