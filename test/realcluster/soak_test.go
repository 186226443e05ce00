//go:build realcluster && soak

package realcluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/injector"
)

// TestSoak (make e2e-soak, not in make e2e: 12 minutes) keeps an app calling the API through
// the proxy, once a second, with the shortest token the injector allows (600 s): the kubelet
// refreshes a projected token at 80 % of its life, so the sidecar must switch to a new token
// during the run without a failed request. The test watches the token file the kubelet
// writes on the node and reports when it changed.
func TestSoak(t *testing.T) {
	duration := 12 * time.Minute
	if v := os.Getenv("E2E_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("E2E_SOAK_DURATION=%q: want a Go duration such as 12m: %v", v, err)
		}
		duration = d
	}
	nodeDir := os.Getenv("E2E_NODE_DIR")
	if nodeDir == "" {
		t.Fatal("E2E_NODE_DIR is not set: run this test through make e2e-soak")
	}
	ns := newNamespace(t, "e2e-soak", nil)
	pod := appPod("soak", optIn(injector.TokenExpirationSecondsAnnotation, "600"), "soak", duration.String())
	p := createPod(t, ns, pod)
	start := time.Now()
	tokenFile := filepath.Join(nodeDir, "var/kubelet/pods", string(p.UID), "volumes/kubernetes.io~projected", injector.TokenVolumeName, "token")

	type change struct {
		at       time.Duration
		iat, exp int64
	}
	var changes []change
	var last string
	var phase corev1.PodPhase
	err := pollErr(t.Context(), duration+3*time.Minute, "the soak pod to finish", func(ctx context.Context) (bool, error) {
		if data, err := os.ReadFile(tokenFile); err == nil && string(data) != last {
			last = string(data)
			iat, exp := claims(last)
			changes = append(changes, change{at: time.Since(start).Round(time.Second), iat: iat, exp: exp})
		}
		got, err := clientset.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = got.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if phase != corev1.PodSucceeded {
		t.Fatalf("soak pod ended %s:\n%s", phase, describe(t, ns, pod.Name))
	}
	var r struct {
		Requests int      `json:"requests"`
		Failures int      `json:"failures"`
		Statuses []string `json:"failureStatuses"`
	}
	result(t, ns, pod.Name, "app", &r)
	var seen []string
	for _, c := range changes {
		seen = append(seen, fmt.Sprintf("%s (token lifetime %ds)", c.at, c.exp-c.iat))
	}
	fmt.Printf("FIGURE soak: %s, %d requests through the proxy, %d failed; token file written at %s after pod creation\n",
		duration, r.Requests, r.Failures, strings.Join(seen, ", "))
	if r.Failures != 0 {
		t.Errorf("%d of %d requests failed: %v", r.Failures, r.Requests, r.Statuses)
	}
	if r.Requests < int(duration/time.Second)/2 {
		t.Errorf("only %d requests in %s", r.Requests, duration)
	}
	if duration > 10*time.Minute && len(changes) < 2 {
		t.Errorf("the token file never changed in %s (writes seen: %v); the kubelet should refresh a 600 s token at 80 %%", duration, seen)
	}
}

// claims returns the iat and exp claims of a JWT, or zeros.
func claims(token string) (int64, int64) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return 0, 0
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0, 0
	}
	var c struct {
		IAT int64 `json:"iat"`
		EXP int64 `json:"exp"`
	}
	_ = json.Unmarshal(data, &c)
	return c.IAT, c.EXP
}
