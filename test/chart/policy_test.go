package chart

import (
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// kustomizePolicies holds the chart's ValidatingAdmissionPolicies for the plain (kustomize)
// install; -update rewrites it from the chart.
const kustomizePolicies = "../../config/policy/policies.yaml"

var update = flag.Bool("update", false, "rewrite "+kustomizePolicies+" from the chart's default render")

// policyNames are the policies (and their bindings, named alike) by the value that switches
// them, for the documented release name.
var policyNames = map[string][]string{
	"uninjectedPods":      {fullname + "-injection-required", fullname + "-injection-expected"},
	"injectedAnnotations": {fullname + "-injected-annotations"},
	"workloadAnnotations": {fullname + "-workload-annotations", fullname + "-workload-annotation-placement"},
	"namespaceLabel":      {fullname + "-namespace-label"},
}

// wantActions are the validationActions of each binding: refusals Deny, the rest Warn.
var wantActions = map[string]admissionregistrationv1.ValidationAction{
	fullname + "-injection-required":            admissionregistrationv1.Deny,
	fullname + "-injection-expected":            admissionregistrationv1.Warn,
	fullname + "-injected-annotations":          admissionregistrationv1.Deny,
	fullname + "-workload-annotations":          admissionregistrationv1.Deny,
	fullname + "-workload-annotation-placement": admissionregistrationv1.Warn,
	fullname + "-namespace-label":               admissionregistrationv1.Deny,
}

// TestPolicies: every policy is rendered by default with a binding of the right action, fails
// closed on errors, and leaves alone the namespaces the webhook never serves; each value
// switches off exactly its own policies.
func TestPolicies(t *testing.T) {
	r := render(t, "--set", "webhook.excludedNamespaces={team-x}")
	for _, names := range policyNames {
		for _, name := range names {
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			r.decode(t, "ValidatingAdmissionPolicy", name, &p)
			var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
			r.decode(t, "ValidatingAdmissionPolicyBinding", name, &b)
			if b.Spec.PolicyName != name || !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{wantActions[name]}) {
				t.Errorf("binding %s: policy %q, actions %v; want %s, [%s]", name, b.Spec.PolicyName, b.Spec.ValidationActions, name, wantActions[name])
			}
			if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Fail {
				t.Errorf("policy %s: failurePolicy %v, want Fail", name, p.Spec.FailurePolicy)
			}
			var excluded []string
			for _, e := range p.Spec.MatchConstraints.NamespaceSelector.MatchExpressions {
				if e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn" {
					excluded = e.Values
				}
			}
			if diff := cmp.Diff([]string{"team-x", "kube-system", "kube-node-lease", releaseNamespace}, excluded); diff != "" {
				t.Errorf("policy %s: excluded namespaces (-want +got):\n%s", name, diff)
			}
		}
	}

	for value := range policyNames {
		t.Run(value+"=false", func(t *testing.T) {
			off := render(t, "--set", "policies."+value+"=false")
			for v, ns := range policyNames {
				for _, name := range ns {
					rendered := off.find("ValidatingAdmissionPolicy", name) != nil && off.find("ValidatingAdmissionPolicyBinding", name) != nil
					if want := v != value; rendered != want {
						t.Errorf("%s rendered = %v, want %v", name, rendered, want)
					}
				}
			}
		})
	}
}

// TestPoliciesNoDrift checks that config/policy/policies.yaml holds the policies and bindings
// that the chart renders for the default values and the documented release (names and specs;
// labels are not compared). With -update it rewrites the file from the chart.
func TestPoliciesNoDrift(t *testing.T) {
	r := render(t)
	var chart []string
	for i, o := range r.objects {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
			chart = append(chart, string(r.raw[i]))
		}
	}
	if *update {
		if err := os.WriteFile(kustomizePolicies, []byte(kustomizeDocument(chart)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(kustomizePolicies)
	if err != nil {
		t.Fatal(err)
	}
	file, err := parse(data)
	if err != nil {
		t.Fatalf("%s: %v", kustomizePolicies, err)
	}
	want, err := parse([]byte(strings.Join(chart, "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.kinds(), file.kinds()); diff != "" {
		t.Fatalf("objects differ (-chart +%s); run `go test ./test/chart -run TestPoliciesNoDrift -update`:\n%s", kustomizePolicies, diff)
	}
	for _, o := range want.objects {
		switch o.GetKind() {
		case "ValidatingAdmissionPolicy":
			var c, f admissionregistrationv1.ValidatingAdmissionPolicy
			want.decode(t, o.GetKind(), o.GetName(), &c)
			file.decode(t, o.GetKind(), o.GetName(), &f)
			if diff := cmp.Diff(c.Spec, f.Spec); diff != "" {
				t.Errorf("%s differs (-chart +%s); run `go test ./test/chart -run TestPoliciesNoDrift -update`:\n%s", o.GetName(), kustomizePolicies, diff)
			}
		case "ValidatingAdmissionPolicyBinding":
			var c, f admissionregistrationv1.ValidatingAdmissionPolicyBinding
			want.decode(t, o.GetKind(), o.GetName(), &c)
			file.decode(t, o.GetKind(), o.GetName(), &f)
			if diff := cmp.Diff(c.Spec, f.Spec); diff != "" {
				t.Errorf("%s differs (-chart +%s); run `go test ./test/chart -run TestPoliciesNoDrift -update`:\n%s", o.GetName(), kustomizePolicies, diff)
			}
		}
	}
}

// kustomizeDocument turns rendered chart documents into the content of config/policy: the
// labels that only Helm sets and Helm's "# Source:" lines are dropped; comments stay.
func kustomizeDocument(docs []string) string {
	var b strings.Builder
	b.WriteString("# The chart's ValidatingAdmissionPolicies for the plain (kustomize) install, as the chart renders\n" +
		"# them for the release api-access-injector in api-access-system. Generated: edit the chart's\n" +
		"# templates/validatingadmissionpolicy-*.yaml, then run\n" +
		"#   go test ./test/chart -run TestPoliciesNoDrift -update\n" +
		"# (TestPoliciesNoDrift fails when the two differ).\n")
	for _, doc := range docs {
		b.WriteString("---\n")
		for line := range strings.Lines(doc) {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "# Source:") || trimmed == "---" || slices.ContainsFunc([]string{
				"helm.sh/chart:", "app.kubernetes.io/instance:", "app.kubernetes.io/version:", "app.kubernetes.io/managed-by:",
			}, func(p string) bool { return strings.HasPrefix(trimmed, p) }) {
				continue
			}
			b.WriteString(line)
		}
		if !strings.HasSuffix(doc, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}
