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

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"
)

// The admission as the API server sees it: server-side dry-run creates of the benchmark pod
// through envtest's API server, with every target registered at once, each for a namespace of
// its own (and one namespace with no webhook), one create per namespace in turn: the
// difference of the p50s is what a webhook adds to a pod create, including the API server's
// work of calling it and of applying and validating its patch, and the machine's drift, which
// on a shared machine is larger than the differences measured, touches every target alike.

// webhookName names the MutatingWebhookConfiguration of the targets.
const webhookName = "webhookload"

// apiClient creates pods by dry run and registers the webhooks under measure.
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

// apiTarget is a webhook as the API server calls it.
type apiTarget struct {
	name   string
	url    string
	marker []byte // of its mutation in the created pod
	sameAs int    // 1 + the index of the target whose mutation this one repeats; 0: none
}

// targetNamespace is the namespace of the i-th target's creates; 0 is the one with no webhook.
func targetNamespace(i int) string { return fmt.Sprintf("%s-%d", benchNamespace, i) }

// register makes the targets the mutating webhooks of pod creates, each for its own namespace,
// and creates those namespaces with the benchmark pod's ServiceAccount.
func (c *apiClient) register(targets []apiTarget) error {
	var webhooks []any
	for i := range len(targets) + 1 {
		ns := targetNamespace(i)
		if err := createNamespace(c.http, c.host, ns); err != nil {
			return err
		}
		if i == 0 {
			continue
		}
		webhooks = append(webhooks, map[string]any{
			"name":                    fmt.Sprintf("t%d.webhookload.apiaccess.io", i),
			"clientConfig":            map[string]any{"url": targets[i-1].url, "caBundle": c.caBundle},
			"rules":                   []any{map[string]any{"apiGroups": []string{""}, "apiVersions": []string{"v1"}, "operations": []string{"CREATE"}, "resources": []string{"pods"}}},
			"namespaceSelector":       map[string]any{"matchLabels": map[string]string{"kubernetes.io/metadata.name": ns}},
			"failurePolicy":           "Fail",
			"sideEffects":             "None",
			"admissionReviewVersions": []string{"v1"},
			"timeoutSeconds":          10,
		})
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
		"metadata": map[string]any{"name": webhookName}, "webhooks": webhooks,
	})
	if err != nil {
		return err
	}
	return c.do(http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", body, http.StatusCreated)
}

// Markers of each webhook's mutation in the created pod: the injected sidecar, and the null
// webhook's annotation.
var (
	markerOurs = []byte(`"name":"api-proxy"`)
	markerNull = []byte(`"null":"true"`)
	// markerVariant marks a variant of our mutation (-null-patch): the names it injects.
	markerVariant = []byte(`apiaccess-`)
)

// create creates pod (JSON) by server-side dry run in namespace ns, and returns how long it
// took and the pod created.
func (c *apiClient) create(ns string, pod []byte) (time.Duration, []byte, error) {
	start := time.Now()
	resp, err := c.http.Post(c.host+"/api/v1/namespaces/"+ns+"/pods?dryRun=All", "application/json", bytes.NewReader(pod))
	if err != nil {
		return 0, nil, err
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusCreated {
		return 0, nil, fmt.Errorf("dry-run create in %s: %s: %s", ns, resp.Status, out)
	}
	return d, out, nil
}

// mutated reports whether a created pod holds marker (with a nil marker: neither our nor the
// null webhook's).
func mutated(pod, marker []byte) bool {
	if marker == nil {
		return !bytes.Contains(pod, markerOurs) && !bytes.Contains(pod, markerNull)
	}
	return bytes.Contains(pod, marker)
}

// interleaved creates each pod n times in every target's namespace and in the one with no
// webhook, one create per namespace in turn (the order rotating), after waiting for the API
// server's admission chain to call each target (the configuration arrives through an
// informer) and a warm-up. It returns the p50s by target (0: no webhook), then by pod. Targets
// that are the same (a non-zero sameAs) must create the same pods, or the comparison would
// not be of one mutation: it fails otherwise.
func (c *apiClient) interleaved(targets []apiTarget, creates []createPod, n int) ([][]time.Duration, error) {
	markers := [][]byte{nil}
	for _, t := range targets {
		markers = append(markers, t.marker)
	}
	bodies := make([][][]byte, len(markers)) // by target, then pod
	for i := range markers {
		for _, p := range creates {
			b, err := inNamespace(p.body, targetNamespace(i))
			if err != nil {
				return nil, err
			}
			bodies[i] = append(bodies[i], b)
		}
	}
	for i, m := range markers {
		settled := false
		for deadline := time.Now().Add(20 * time.Second); !settled && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			_, pod, err := c.create(targetNamespace(i), bodies[i][0])
			settled = err == nil && mutated(pod, m)
		}
		if !settled {
			return nil, fmt.Errorf("the API server's answer in namespace %s did not show the webhook registered (%q) within 20s", targetNamespace(i), m)
		}
	}
	for i, t := range targets {
		if t.sameAs == 0 {
			continue
		}
		for p := range creates {
			var pods [2]map[string]any
			for k, j := range []int{t.sameAs, i + 1} {
				_, pod, err := c.create(targetNamespace(j), bodies[j][p])
				if err != nil {
					return nil, err
				}
				if pods[k], err = stripped(pod); err != nil {
					return nil, err
				}
			}
			if diff := cmp.Diff(pods[0], pods[1]); diff != "" {
				return nil, fmt.Errorf("%s: %s: the pod created differs from %s's (-theirs +this):\n%s", t.name, creates[p].name, targets[t.sameAs-1].name, diff)
			}
		}
	}
	lat := make([][][]time.Duration, len(markers))
	for i := range lat {
		lat[i] = make([][]time.Duration, len(creates))
	}
	for k := range n + 20 { // the first 20 are a warm-up
		for p := range creates {
			for j := range markers {
				i := (j + k) % len(markers)
				d, _, err := c.create(targetNamespace(i), bodies[i][p])
				if err != nil {
					return nil, err
				}
				if k >= 20 {
					lat[i][p] = append(lat[i][p], d)
				}
			}
		}
	}
	p50 := make([][]time.Duration, len(markers))
	for i := range lat {
		for _, l := range lat[i] {
			slices.Sort(l)
			p50[i] = append(p50[i], l[len(l)/2])
		}
	}
	return p50, nil
}

// stripped is a created pod without what differs from one create to the next: its name,
// namespace, uid, creation time and managed fields.
func stripped(pod []byte) (map[string]any, error) {
	var obj map[string]any
	if err := json.Unmarshal(pod, &obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	for _, k := range []string{"name", "namespace", "uid", "creationTimestamp", "managedFields"} {
		delete(meta, k)
	}
	return obj, nil
}

// inNamespace returns the pod (JSON) with its namespace set to ns.
func inNamespace(pod []byte, ns string) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(pod, &obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		return nil, fmt.Errorf("the pod has no metadata")
	}
	meta["namespace"] = ns
	return json.Marshal(obj)
}

// profile records the API server's CPU profile over 20s of dry-run creates of the pod in
// namespace ns, one after the other, into file: where the API server's time goes, e.g. with a
// webhook registered against without (go tool pprof -diff_base).
func (c *apiClient) profile(ns string, pod []byte, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	pod, err := inNamespace(pod, ns)
	if err != nil {
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
		if _, _, err := c.create(ns, pod); err != nil {
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
