package testenv

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestKubernetesVersionMatchesTheScript: the Go tests and the Makefile's scripts derive the
// envtest version from go.mod the same way, so they provision and look for the same binaries.
func TestKubernetesVersionMatchesTheScript(t *testing.T) {
	got, err := kubernetesVersion()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^1\.[0-9]+\.[0-9]+$`).MatchString(got) {
		t.Errorf("KubernetesVersion() = %q, want 1.Y.Z", got)
	}
	out, err := exec.Command("../../../hack/kube-version.sh").Output()
	if err != nil {
		t.Fatalf("hack/kube-version.sh: %v", err)
	}
	if want := strings.TrimSpace(string(out)); got != want {
		t.Errorf("KubernetesVersion() = %q, hack/kube-version.sh prints %q", got, want)
	}
}

// TestAssetsDirWithoutKubebuilderAssets: with KUBEBUILDER_ASSETS unset, the binaries are found
// where `make envtest` puts them for that version.
func TestAssetsDirWithoutKubebuilderAssets(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	dir, err := AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := "/" + KubernetesVersion() + "-"; !strings.Contains(dir, want) {
		t.Errorf("AssetsDir() = %s, want a directory named for the version (%s...)", dir, want)
	}
}
