package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// The admission as the API server sees it: sequential server-side dry-run creates of the
// benchmark pod, with no webhook registered, then with each target registered in turn. The
// difference of the p50s is what the webhook adds to a pod create, including the API server's
// work of calling it and of applying and validating its patch.

// webhookName names the MutatingWebhookConfiguration registered for each target.
const webhookName = "webhookload"

// apiClient creates pods by dry run and registers the webhook under measure.
type apiClient struct {
	http     *http.Client
	host     string
	caBundle []byte
}

func newAPIClient(cfg *rest.Config, certDir string) (*apiClient, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "tls.crt")) // self-signed: its own CA
	if err != nil {
		return nil, err
	}
	return &apiClient{http: hc, host: strings.TrimSuffix(cfg.Host, "/"), caBundle: ca}, nil
}

func (c *apiClient) do(method, path string, body []byte, want int) error {
	req, err := http.NewRequest(method, c.host+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, out)
	}
	return nil
}

// register makes url the only mutating webhook for pod creates (none when url is "").
func (c *apiClient) register(url string) error {
	const path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
	err := c.do(http.MethodDelete, path+"/"+webhookName, nil, http.StatusOK)
	if err != nil && !strings.Contains(err.Error(), "404") {
		return err
	}
	if url == "" {
		return nil
	}
	cfg := map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
		"metadata": map[string]any{"name": webhookName},
		"webhooks": []any{map[string]any{
			"name":                    "load.webhookload.apiaccess.io",
			"clientConfig":            map[string]any{"url": url, "caBundle": c.caBundle},
			"rules":                   []any{map[string]any{"apiGroups": []string{""}, "apiVersions": []string{"v1"}, "operations": []string{"CREATE"}, "resources": []string{"pods"}}},
			"failurePolicy":           "Fail",
			"sideEffects":             "None",
			"admissionReviewVersions": []string{"v1"},
			"timeoutSeconds":          10,
		}},
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return c.do(http.MethodPost, path, body, http.StatusCreated)
}

// Markers of each webhook's mutation in the created pod: the injected sidecar, and the null
// webhook's annotation.
var (
	markerOurs = []byte(`"name":"api-proxy"`)
	markerNull = []byte(`"null":"true"`)
)

// dryRunP50 creates the pod n times by server-side dry run, one after the other, after a
// warm-up that also waits for the API server's admission chain to have the configuration just
// registered (it arrives through an informer): until the answer carries marker, or, with a nil
// marker, carries neither webhook's marker. It returns the p50.
func (c *apiClient) dryRunP50(pod []byte, n int, marker []byte) (time.Duration, error) {
	path := "/api/v1/namespaces/" + benchNamespace + "/pods?dryRun=All"
	create := func() (time.Duration, bool, error) {
		start := time.Now()
		resp, err := c.http.Post(c.host+path, "application/json", bytes.NewReader(pod))
		if err != nil {
			return 0, false, err
		}
		out, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != http.StatusCreated {
			return 0, false, fmt.Errorf("dry-run create: %s: %s", resp.Status, out)
		}
		if marker == nil {
			return d, !bytes.Contains(out, markerOurs) && !bytes.Contains(out, markerNull), nil
		}
		return d, bytes.Contains(out, marker), nil
	}
	settled := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, ok, err := create()
		if err == nil && ok {
			settled = true
			break
		}
	}
	if !settled {
		return 0, fmt.Errorf("the API server's answer did not show the webhook registered (%q) within 20s", marker)
	}
	for range 20 { // warm-up
		if _, _, err := create(); err != nil {
			return 0, err
		}
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		d, _, err := create()
		if err != nil {
			return 0, err
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], nil
}
