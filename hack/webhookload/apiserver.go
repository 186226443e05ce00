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
	// A plain POST rather than client-go's typed clientset: linking that into this binary,
	// which also serves the null webhook, would grow the floor's memory by about 10 MB.
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", nil, nil, err
	}
	resp, err := hc.Post(strings.TrimSuffix(cfg.Host, "/")+"/api/v1/namespaces", "application/json",
		strings.NewReader(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"`+ns+`"}}`))
	if err != nil {
		return "", nil, nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", nil, nil, fmt.Errorf("creating namespace %s: %s: %s", ns, resp.Status, body)
	}
	// The benchmark pod's ServiceAccount, which the API server's ServiceAccount admission
	// looks up when the pod is created by dry run (-creates).
	resp, err = hc.Post(strings.TrimSuffix(cfg.Host, "/")+"/api/v1/namespaces/"+ns+"/serviceaccounts", "application/json",
		strings.NewReader(`{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"checkout-api"}}`))
	if err != nil {
		return "", nil, nil, fmt.Errorf("creating the ServiceAccount: %w", err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", nil, nil, fmt.Errorf("creating the ServiceAccount: %s: %s", resp.Status, body)
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
