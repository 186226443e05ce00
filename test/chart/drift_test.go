package chart

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// kustomizeWebhook is the webhook configuration of the plain (kustomize) install, which must
// not drift from the chart's: the chart is the one source of truth.
const kustomizeWebhook = "../../config/webhook/manifests.yaml"

// TestNoDrift checks that the webhook entries of config/webhook/manifests.yaml are those the
// chart renders for the default values and the documented release name and namespace: names,
// services, paths, rules, selectors, matchConditions, policies and timeouts. The chart's labels
// are not compared, nor the caBundle, which neither sets in self-managed mode.
func TestNoDrift(t *testing.T) {
	data, err := os.ReadFile(kustomizeWebhook)
	if err != nil {
		t.Fatal(err)
	}
	var want admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &want); err != nil {
		t.Fatalf("%s: %v", kustomizeWebhook, err)
	}
	got := webhookConfig(t, render(t))

	if got.Name != want.Name {
		t.Errorf("name: chart %q, %s %q", got.Name, kustomizeWebhook, want.Name)
	}
	for i := range got.Webhooks {
		got.Webhooks[i].ClientConfig.CABundle = nil
	}
	for i := range want.Webhooks {
		want.Webhooks[i].ClientConfig.CABundle = nil
	}
	if diff := cmp.Diff(want.Webhooks, got.Webhooks); diff != "" {
		t.Errorf("webhooks differ (-%s +chart); regenerate it from the chart:\n%s", kustomizeWebhook, diff)
	}
}
