package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/api-access-injector/api-access-injector/test/framework/testenv"
)

// benchNamespace is the namespace of every AdmissionReview sent.
const benchNamespace = "bench"

// apiServer starts envtest's API server with the namespace ns and writes a kubeconfig for it
// into dir, as the webhook's KUBECONFIG. stop stops the API server.
func apiServer(dir, ns string) (kubeconfig string, cfg *rest.Config, stop func(), err error) {
	env, cfg, err := testenv.Start()
	if err != nil {
		return "", nil, nil, fmt.Errorf("starting the API server: %w", err)
	}
	stopEnv := func() { _ = env.Stop() }
	defer func() {
		if err != nil {
			stopEnv()
		}
	}()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", nil, nil, err
	}
	if err := createNamespace(hc, strings.TrimSuffix(cfg.Host, "/"), ns); err != nil {
		return "", nil, nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "webhookload", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", nil, nil, fmt.Errorf("adding the webhook's user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", nil, nil, err
	}
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return "", nil, nil, err
	}
	return kubeconfig, cfg, stopEnv, nil
}

// createNamespace creates namespace ns and in it the benchmark pod's ServiceAccount, which the
// API server's ServiceAccount admission looks up when the pod is created by dry run. A plain
// POST rather than client-go's typed clientset: linking that into this binary, which also
// serves the null webhook, would grow the floor's memory by about 10 MB.
func createNamespace(hc *http.Client, host, ns string) error {
	for _, o := range []struct{ path, body string }{
		{"/api/v1/namespaces", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"` + ns + `"}}`},
		{"/api/v1/namespaces/" + ns + "/serviceaccounts", `{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"checkout-api"}}`},
	} {
		resp, err := hc.Post(host+o.path, "application/json", strings.NewReader(o.body))
		if err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("creating namespace %s: POST %s: %s: %s", ns, o.path, resp.Status, body)
		}
	}
	return nil
}
