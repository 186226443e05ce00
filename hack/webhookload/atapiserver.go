package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/api-access-injector/api-access-injector/hack/internal/proc"
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
	pid      int // the API server's, for its CPU time; 0 if not found
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
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	return &apiClient{http: hc, host: strings.TrimSuffix(cfg.Host, "/"), caBundle: ca, pid: proc.FindPID("--secure-port=" + u.Port())}, nil
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
	// markerVariant marks a variant of our mutation (-null-patch): the names it injects.
	markerVariant = []byte(`apiaccess-`)
)

// dryRunP50 creates the pod n times by server-side dry run, one after the other, after a
// warm-up that also waits for the API server's admission chain to have the configuration just
// registered (it arrives through an informer): until the answer carries marker, or, with a nil
// marker, carries neither webhook's marker. It returns the p50, and the API server's CPU time
// per create (0 if its process was not found).
func (c *apiClient) dryRunP50(pod []byte, n int, marker []byte) (p50, cpu time.Duration, err error) {
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
		return 0, 0, fmt.Errorf("the API server's answer did not show the webhook registered (%q) within 20s", marker)
	}
	for range 20 { // warm-up
		if _, _, err := create(); err != nil {
			return 0, 0, err
		}
	}
	lat := make([]time.Duration, 0, n)
	cpu0 := proc.CPUTime(c.pid)
	for range n {
		d, _, err := create()
		if err != nil {
			return 0, 0, err
		}
		lat = append(lat, d)
	}
	if c.pid != 0 {
		cpu = (proc.CPUTime(c.pid) - cpu0) / time.Duration(n)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], cpu, nil
}

// profile records the API server's CPU profile over 20s of dry-run creates of the pod, one
// after the other, into file: where the API server's time goes, e.g. with a webhook registered
// against without (go tool pprof -diff_base).
func (c *apiClient) profile(pod []byte, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	type answer struct {
		data []byte
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := c.http.Get(c.host + "/debug/pprof/profile?seconds=20")
		if err != nil {
			done <- answer{err: err}
			return
		}
		data, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("the API server's CPU profile: %s: %s", resp.Status, data)
		}
		done <- answer{data, err}
	}()
	path := "/api/v1/namespaces/" + benchNamespace + "/pods?dryRun=All"
	for n := 0; ; n++ {
		select {
		case a := <-done:
			if a.err != nil {
				return a.err
			}
			fmt.Fprintf(os.Stderr, "%s: %d creates in 20s\n", file, n)
			return os.WriteFile(file, a.data, 0o600)
		default:
		}
		if err := c.do(http.MethodPost, path, pod, http.StatusCreated); err != nil {
			return err
		}
	}
}

// createPod is a pod created at the API server by dry run.
type createPod struct {
	name string
	body []byte // JSON
}

// createPods are the pods created at the API server: the benchmark pod; the same pod with
// its first container alone (no init container), as the anchors' figures were measured; and the
// benchmark pod with the annotation apiaccess.io/containers naming that container alone (the
// others get no environment or mount), what a pod whose other containers need no API access
// can ask for.
func createPods(benchmark []byte) ([]createPod, error) {
	variant := func(generateName string, change func(meta, spec map[string]any, first string)) ([]byte, error) {
		var pod map[string]any
		if err := json.Unmarshal(benchmark, &pod); err != nil {
			return nil, err
		}
		meta, _ := pod["metadata"].(map[string]any)
		spec, _ := pod["spec"].(map[string]any)
		containers, _ := spec["containers"].([]any)
		if meta == nil || len(containers) == 0 {
			return nil, fmt.Errorf("the benchmark pod has no metadata or no containers")
		}
		first, _ := containers[0].(map[string]any)["name"].(string)
		meta["generateName"] = generateName
		change(meta, spec, first)
		return json.Marshal(pod)
	}
	one, err := variant("one-container-", func(_, spec map[string]any, _ string) {
		spec["containers"] = spec["containers"].([]any)[:1]
		delete(spec, "initContainers")
	})
	if err != nil {
		return nil, err
	}
	only, err := variant("containers-first-", func(meta, _ map[string]any, first string) {
		annotations, _ := meta["annotations"].(map[string]any)
		if annotations == nil {
			annotations = map[string]any{}
			meta["annotations"] = annotations
		}
		annotations["apiaccess.io/containers"] = first
	})
	if err != nil {
		return nil, err
	}
	var pod struct {
		Spec struct{ InitContainers, Containers []json.RawMessage } `json:"spec"`
	}
	if err := json.Unmarshal(benchmark, &pod); err != nil {
		return nil, err
	}
	return []createPod{
		{fmt.Sprintf("benchmark pod (%d containers)", len(pod.Spec.InitContainers)+len(pod.Spec.Containers)), benchmark},
		{"one container", one},
		{"benchmark pod, apiaccess.io/containers naming one", only},
	}, nil
}

// writePatches writes the patches answered for the created pods as the null webhook reads them
// (--patch-file): a JSON object from each pod's generateName to its patch.
func writePatches(file string, creates []createPod, patches [][]byte) error {
	byName := map[string]json.RawMessage{}
	for i, c := range creates {
		var pod struct {
			Metadata struct {
				GenerateName string `json:"generateName"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(c.body, &pod); err != nil {
			return err
		}
		byName[pod.Metadata.GenerateName] = patches[i]
	}
	data, err := json.Marshal(byName)
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o600)
}
