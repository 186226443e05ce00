//go:build realcluster

package realcluster

import (
	"regexp"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHelmTest runs the chart's own check, as its NOTES tell users to: `helm test` creates
// an opted-in pod in the namespace default by server-side dry run and passes only if it
// comes back injected. Its probe pod runs the node's kubectl image (image.kubectl's default)
// with in-cluster credentials; once it passes, its hooks are deleted.
func TestHelmTest(t *testing.T) {
	out, err := helm(t.Context(), "test", releaseName, "-n", releaseNS, "--logs", "--timeout", "3m")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Phase:\s+Succeeded`).MatchString(out) {
		t.Errorf("helm test did not report the probe as succeeded:\n%s", out)
	}
	if !strings.Contains(out, "injected: sidecar api-proxy (image ") {
		t.Errorf("the probe's log does not show the injected sidecar:\n%s", out)
	}
	// hook-succeeded: nothing of the test is left, in the release namespace or in default.
	name := releaseName + "-test"
	if _, err := clientset.RbacV1().Roles("default").Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Role default/%s after a passing helm test: %v, want it deleted", name, err)
	}
	if _, err := clientset.CoreV1().ServiceAccounts(releaseNS).Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceAccount %s/%s after a passing helm test: %v, want it deleted", releaseNS, name, err)
	}
}
