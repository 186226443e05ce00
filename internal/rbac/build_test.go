package rbac

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden turns each testdata/<case>.json (records, as `api-proxy access -o json` prints
// them) into YAML and JSON, compared with testdata/<case>.golden.yaml and .golden.json.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range files {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			records, err := accessrecord.Decode(f, in)
			if err != nil {
				t.Fatal(err)
			}
			s := Build(records)
			var y, j bytes.Buffer
			if err := WriteYAML(&y, s); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&j, s); err != nil {
				t.Fatal(err)
			}
			golden(t, "testdata/"+name+".golden.yaml", y.String())
			golden(t, "testdata/"+name+".golden.json", j.String())
			// Deterministic: the records in another order give the same output.
			rev := make([]accessrecord.Record, len(records))
			for i, r := range records {
				r.Requests = append([]accessrecord.Request(nil), r.Requests...)
				for a, b := 0, len(r.Requests)-1; a < b; a, b = a+1, b-1 {
					r.Requests[a], r.Requests[b] = r.Requests[b], r.Requests[a]
				}
				rev[len(records)-1-i] = r
			}
			var y2 bytes.Buffer
			if err := WriteYAML(&y2, Build(rev)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(y.String(), y2.String()); diff != "" {
				t.Errorf("output depends on the order of records and requests (-forward +reversed):\n%s", diff)
			}
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/rbac -run TestGolden -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func req(verb, group, resource, sub, ns string, outcome accessrecord.Outcome, n int64) accessrecord.Request {
	return accessrecord.Request{Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Outcome: outcome, Count: n}
}

func url(verb, u string, n int64) accessrecord.Request {
	return accessrecord.Request{Verb: verb, NonResourceURL: u, Outcome: accessrecord.Allowed, Count: n}
}

// TestGrants checks the rule building case by case: exact (no rule grants a pair that was
// not used), grouped, sorted, scoped.
func TestGrants(t *testing.T) {
	const ok = accessrecord.Allowed
	pr := func(groups, resources, verbs []string, n int64) Rule {
		return Rule{PolicyRule: rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs}, Count: n}
	}
	s := func(ss ...string) []string { return ss }
	for _, tc := range []struct {
		name     string
		requests []accessrecord.Request
		want     []Grant
	}{{
		name:     "verbs of one resource in one rule, in Kubernetes' order",
		requests: []accessrecord.Request{req("watch", "", "pods", "", "ns", ok, 1), req("get", "", "pods", "", "ns", ok, 2), req("list", "", "pods", "", "ns", ok, 3)},
		want:     []Grant{{Namespace: "ns", Rules: []Rule{pr(s(""), s("pods"), s("get", "list", "watch"), 6)}}},
	}, {
		name: "resources with the same verbs share a rule; different verbs do not, so nothing unused is granted",
		requests: []accessrecord.Request{req("get", "", "pods", "", "ns", ok, 1), req("get", "", "configmaps", "", "ns", ok, 1),
			req("list", "", "pods", "", "ns", ok, 1)},
		want: []Grant{{Namespace: "ns", Rules: []Rule{pr(s(""), s("configmaps"), s("get"), 1), pr(s(""), s("pods"), s("get", "list"), 2)}}},
	}, {
		name:     "groups are never merged: a rule's groups × resources would grant pairs not used",
		requests: []accessrecord.Request{req("create", "", "events", "", "ns", ok, 1), req("create", "events.k8s.io", "events", "", "ns", ok, 1)},
		want:     []Grant{{Namespace: "ns", Rules: []Rule{pr(s(""), s("events"), s("create"), 1), pr(s("events.k8s.io"), s("events"), s("create"), 1)}}},
	}, {
		name:     "subresources as resource/subresource",
		requests: []accessrecord.Request{req("get", "", "pods", "log", "ns", ok, 1), req("update", "apps", "deployments", "scale", "ns", ok, 1)},
		want:     []Grant{{Namespace: "ns", Rules: []Rule{pr(s(""), s("pods/log"), s("get"), 1), pr(s("apps"), s("deployments/scale"), s("update"), 1)}}},
	}, {
		name: "scopes: own namespace, other namespaces, then the cluster (cluster-scoped, all namespaces, non-resource URLs)",
		requests: []accessrecord.Request{url("get", "/version", 1), req("list", "", "pods", "", "", ok, 1), req("get", "", "nodes", "", "", ok, 1),
			req("get", "", "configmaps", "", "zeta", ok, 1), req("get", "", "configmaps", "", "alpha", ok, 1), req("get", "", "configmaps", "", "ns", ok, 1),
			url("get", "/healthz", 1), url("post", "/logs", 1)},
		want: []Grant{
			{Namespace: "ns", Rules: []Rule{pr(s(""), s("configmaps"), s("get"), 1)}},
			{Namespace: "alpha", Rules: []Rule{pr(s(""), s("configmaps"), s("get"), 1)}},
			{Namespace: "zeta", Rules: []Rule{pr(s(""), s("configmaps"), s("get"), 1)}},
			{Namespace: "", Rules: []Rule{
				pr(s(""), s("nodes"), s("get"), 1),
				pr(s(""), s("pods"), s("list"), 1),
				{PolicyRule: rbacv1.PolicyRule{NonResourceURLs: s("/healthz", "/version"), Verbs: s("get")}, Count: 2},
				{PolicyRule: rbacv1.PolicyRule{NonResourceURLs: s("/logs"), Verbs: s("post")}, Count: 1},
			}},
		},
	}, {
		name: "forbidden, unauthorized and refused grant nothing; failed does",
		requests: []accessrecord.Request{req("list", "", "secrets", "", "ns", accessrecord.Forbidden, 1), req("list", "", "pods", "", "ns", accessrecord.Unauthorized, 1),
			req("create", "", "pods", "exec", "ns", accessrecord.Refused, 1), req("get", "", "services", "", "ns", accessrecord.Failed, 1)},
		want: []Grant{{Namespace: "ns", Rules: []Rule{pr(s(""), s("services"), s("get"), 1)}}},
	}, {
		name: "a WebSocket exec, attach or port-forward (get) needs create too; a log (get) does not",
		requests: []accessrecord.Request{req("get", "", "pods", "exec", "ns", ok, 2), req("get", "", "pods", "portforward", "ns", ok, 1),
			req("get", "", "pods", "log", "ns", ok, 1), req("create", "", "pods", "attach", "ns", ok, 1)},
		want: []Grant{{Namespace: "ns", Rules: []Rule{pr(s(""), s("pods/attach"), s("create"), 1),
			pr(s(""), s("pods/exec", "pods/portforward"), s("get", "create"), 3), pr(s(""), s("pods/log"), s("get"), 1)}}},
	}, {
		name:     "no requests, no grants",
		requests: nil,
		want:     []Grant{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := Build([]accessrecord.Record{{Namespace: "ns", ServiceAccount: "app", Pod: "p", Requests: tc.requests}})
			if len(got) != 1 {
				t.Fatalf("%d suggestions, want 1", len(got))
			}
			if diff := cmp.Diff(tc.want, got[0].Grants); diff != "" {
				t.Errorf("grants (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDenied: denied requests become rules of their own, less what another request was allowed
// (a permission added while the sidecar was recording).
func TestDenied(t *testing.T) {
	got := Build([]accessrecord.Record{
		{Namespace: "ns", ServiceAccount: "app", Pod: "a", Requests: []accessrecord.Request{
			req("list", "", "secrets", "", "ns", accessrecord.Forbidden, 2), req("get", "", "secrets", "", "ns", accessrecord.Forbidden, 1),
			req("get", "", "nodes", "", "", accessrecord.Forbidden, 1)}},
		{Namespace: "ns", ServiceAccount: "app", Pod: "b", Requests: []accessrecord.Request{req("list", "", "secrets", "", "ns", accessrecord.Allowed, 1)}},
	})
	want := []Grant{
		{Namespace: "ns", Rules: []Rule{{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}, Count: 1}}},
		{Namespace: "", Rules: []Rule{{PolicyRule: rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}, Count: 1}}},
	}
	if diff := cmp.Diff(want, got[0].Denied); diff != "" {
		t.Errorf("denied (-want +got):\n%s", diff)
	}
}

func TestName(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, tc := range []struct {
		sa   ServiceAccount
		ns   string
		want string
	}{
		{ServiceAccount{"shop", "app"}, "shop", "app-apiaccess"},
		{ServiceAccount{"shop", "app"}, "other", "shop.app-apiaccess"},
		{ServiceAccount{"shop", "app"}, "", "shop.app-apiaccess"},
		{ServiceAccount{"shop", long}, "shop", long[:232] + "-f02baf467b-apiaccess"},
	} {
		got := Name(tc.sa, tc.ns)
		if got != tc.want || len(got) > 253 {
			t.Errorf("Name(%v, %q) = %q (%d characters), want %q", tc.sa, tc.ns, got, len(got), tc.want)
		}
	}
}
