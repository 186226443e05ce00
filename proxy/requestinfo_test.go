package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"
)

// reference is the API server's own request parsing, which parseRequestInfo ports.
var reference = &apirequest.RequestInfoFactory{
	APIPrefixes:          sets.NewString("api", "apis"),
	GrouplessAPIPrefixes: sets.NewString("api"),
}

// info is the part of a requestInfo that the tests compare.
type info struct {
	Resource                                        bool
	Verb, APIGroup, Res, Subresource, Namespace, NR string
	OK                                              bool
}

func ours(method, path, query string) info {
	i, ok := parseRequestInfo(method, path, query)
	return info{i.resource, i.verb, i.apiGroup, i.resourceName, i.subresource, i.namespace, i.path, ok}
}

func theirs(method, path, query string) info {
	r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}}
	ri, err := reference.NewRequestInfo(r)
	nr := ""
	if !ri.IsResourceRequest {
		nr = ri.Path
	}
	return info{ri.IsResourceRequest, ri.Verb, ri.APIGroup, ri.Resource, ri.Subresource, ri.Namespace, nr, err == nil}
}

func TestParseRequestInfo(t *testing.T) {
	for _, tt := range []struct {
		method, path, query string
		want                info
	}{
		{"GET", "/api/v1/namespaces/a/pods", "", info{true, "list", "", "pods", "", "a", "", true}},
		{"GET", "/api/v1/namespaces/a/pods", "watch=true", info{true, "watch", "", "pods", "", "a", "", true}},
		{"GET", "/api/v1/namespaces/a/pods", "watch=0", info{true, "list", "", "pods", "", "a", "", true}},
		{"GET", "/api/v1/namespaces/a/pods", "watch", info{true, "watch", "", "pods", "", "a", "", true}},
		{"GET", "/api/v1/watch/namespaces/a/pods", "", info{true, "watch", "", "pods", "", "a", "", true}},
		{"GET", "/api/v1/namespaces/a/pods/p/log", "follow=true", info{true, "get", "", "pods", "log", "a", "", true}},
		{"HEAD", "/api/v1/pods", "", info{true, "list", "", "pods", "", "", "", true}},
		{"POST", "/api/v1/namespaces/a/pods/p/exec", "command=id", info{true, "create", "", "pods", "exec", "a", "", true}},
		{"DELETE", "/apis/apps/v1/namespaces/a/deployments", "", info{true, "deletecollection", "apps", "deployments", "", "a", "", true}},
		{"DELETE", "/apis/apps/v1/namespaces/a/deployments/d", "", info{true, "delete", "apps", "deployments", "", "a", "", true}},
		{"PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale", "", info{true, "patch", "apps", "deployments", "scale", "a", "", true}},
		{"PUT", "/api/v1/namespaces/a/status", "", info{true, "update", "", "namespaces", "status", "a", "", true}},
		{"PUT", "/api/v1/namespaces/a/finalize", "", info{true, "update", "", "namespaces", "finalize", "a", "", true}},
		{"GET", "/api/v1/namespaces/a", "", info{true, "get", "", "namespaces", "", "a", "", true}},
		{"GET", "/api/v1/namespaces", "", info{true, "list", "", "namespaces", "", "", "", true}},
		{"GET", "/api/v1/nodes/n/proxy/metrics", "", info{true, "get", "", "nodes", "proxy", "", "", true}},
		{"GET", "/api/v1/proxy/namespaces/a/services/s/x", "", info{true, "proxy", "", "services", "", "a", "", true}},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", info{true, "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", "", true}},
		{"OPTIONS", "/api/v1/pods", "", info{true, "", "", "pods", "", "", "", true}},
		{"GET", "/version", "", info{false, "get", "", "", "", "", "/version", true}},
		{"GET", "/apis/apps/v1", "", info{false, "get", "", "", "", "", "/apis/apps/v1", true}},
		{"GET", "/api/v1", "", info{false, "get", "", "", "", "", "/api/v1", true}},
		{"POST", "/healthz/etcd", "", info{false, "post", "", "", "", "", "/healthz/etcd", true}},
		{"GET", "/api/v1/watch", "", info{true, "get", "", "", "", "", "", false}},
	} {
		t.Run(tt.method+" "+tt.path+"?"+tt.query, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ours(tt.method, tt.path, tt.query)); diff != "" {
				t.Errorf("parseRequestInfo (-want +got):\n%s", diff)
			}
			// The table is the reference's behaviour too, but for the error case, where
			// the reference reports the verb it had read before failing.
			if tt.want.OK {
				if diff := cmp.Diff(tt.want, theirs(tt.method, tt.path, tt.query)); diff != "" {
					t.Errorf("RequestInfoFactory (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// FuzzRequestInfo checks parseRequestInfo against the API server's RequestInfoFactory on
// any method, path and query.
func FuzzRequestInfo(f *testing.F) {
	klog.SetOutput(io.Discard) // the reference logs every query it cannot decode
	klog.LogToStderr(false)
	for _, s := range [][3]string{
		{"GET", "/api/v1/namespaces/a/pods", "watch=true&labelSelector=a%3Db"},
		{"GET", "/apis/apps/v1/watch/namespaces/a/deployments/d", ""},
		{"DELETE", "/api/v1/namespaces/a/pods", "fieldSelector=metadata.name%3Dp"},
		{"GET", "/api/v1/namespaces//pods//x/y", "watch=FALSE"},
		{"PUT", "/api/v1/namespaces/a/finalize/x", ""},
		{"GET", "/api/v1/proxy/nodes/n/p", ""},
		{"GET", "/apis/g/v1/proxy", ""},
		{"GET", "/api/v1/pods", "watch=1&limit=x"},
		{"PATCH", "//api/v1/namespaces/a/", ""},
		{"get", "/apis/a/b/c", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		got, want := ours(method, path, query), theirs(method, path, query)
		if !want.OK {
			// The reference fails part-way: only the failure itself is comparable.
			if got.OK {
				t.Errorf("%s %s?%s: parsed %+v, the API server fails", method, path, query, got)
			}
			return
		}
		if v := url.Values(mustParse(query))["watch"]; len(v) > 0 && strings.EqualFold(v[0], "false") && strings.ToLower(v[0]) != "false" {
			// A watch value that folds to false only by Unicode case folding (falſe): the
			// API server reads it as false, unless another parameter fails to decode, when
			// it falls back to strings.ToLower and reads it as true. Not worth porting.
			got.Verb, want.Verb = "", ""
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s %s?%s (-RequestInfoFactory +parseRequestInfo):\n%s", method, path, query, diff)
		}
	})
}

func mustParse(q string) url.Values {
	v, _ := url.ParseQuery(q)
	return v
}
