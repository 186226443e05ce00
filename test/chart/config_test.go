package chart

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/api-access-injector/api-access-injector/injector"
)

// TestRenderedConfigLoads: the injector configuration the chart renders is one the webhook
// accepts (unknown keys are refused) and means what the values say.
func TestRenderedConfigLoads(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		mode  injector.SidecarMode
		image string
		// transparent mode's TLS port and cluster domain
		transparentPort int32
		clusterDomain   string
	}{
		{"default", nil, injector.SidecarAPIProxy, "api-proxy:", 443, "cluster.local"},
		{"kubectl mode", []string{"--set", "sidecar.mode=kubectl"}, injector.SidecarKubectl, "registry.k8s.io/kubectl:v1.37.2", 443, "cluster.local"},
		{"transparent port and cluster domain", []string{"--set", "sidecar.transparentPort=6443,sidecar.clusterDomain=corp.example"},
			injector.SidecarAPIProxy, "api-proxy:", 6443, "corp.example"},
		{"pull secrets", []string{"--set-json", `sidecar.imagePullSecrets=[{"name":"regcred"},{"name":"mirror"}]`}, injector.SidecarAPIProxy, "api-proxy:", 443, "cluster.local"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var cm corev1.ConfigMap
			render(t, tt.args...).decode(t, "ConfigMap", fullname+"-config", &cm)
			cfg, err := injector.LoadConfig([]byte(cm.Data["config.yaml"]))
			if err != nil {
				t.Fatalf("the webhook refuses the rendered config: %v\n%s", err, cm.Data["config.yaml"])
			}
			inj, err := injector.New(cfg)
			if err != nil {
				t.Fatalf("the rendered config is invalid: %v", err)
			}
			got := inj.Config()
			if got.Sidecar.Mode != tt.mode || !strings.Contains(got.Sidecar.Image, tt.image) {
				t.Errorf("sidecar mode %q image %q; want mode %q, image containing %q", got.Sidecar.Mode, got.Sidecar.Image, tt.mode, tt.image)
			}
			if !strings.Contains(got.Sidecar.InitImage, "api-proxy:") {
				t.Errorf("sidecar.initImage %q, want the api-proxy image (the kubeconfig init container of kubectl mode)", got.Sidecar.InitImage)
			}
			if got.TransparentPort != tt.transparentPort || got.ClusterDomain != tt.clusterDomain {
				t.Errorf("transparentPort %d, clusterDomain %q; want %d, %q", got.TransparentPort, got.ClusterDomain, tt.transparentPort, tt.clusterDomain)
			}
			var wantSecrets []corev1.LocalObjectReference
			if tt.name == "pull secrets" {
				wantSecrets = []corev1.LocalObjectReference{{Name: "regcred"}, {Name: "mirror"}}
			}
			if diff := cmp.Diff(wantSecrets, got.Sidecar.ImagePullSecrets); diff != "" {
				t.Errorf("sidecar.imagePullSecrets (-want +got):\n%s", diff)
			}
			for _, ns := range []string{"kube-system", "kube-node-lease", releaseNamespace} {
				if !slices.Contains(got.ExcludedNamespaces, ns) && !slices.Contains(injector.AlwaysExcludedNamespaces, ns) {
					t.Errorf("namespace %s is not excluded: %v", ns, got.ExcludedNamespaces)
				}
			}
		})
	}
}
