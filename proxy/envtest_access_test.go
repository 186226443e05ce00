package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/api-access-injector/api-access-injector/internal/accessrecord"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/api-access-injector/api-access-injector/test/framework/syncbuffer"
)

// TestEnvtestAccessRecord runs an app's calls through a read-only proxy with a real token
// bound to a pod and real RBAC (get, list and watch pods): allowed reads, a watch, a
// non-resource URL, a call RBAC forbids and a write the proxy refuses; the record, the
// metrics and the explanation of the 403 say exactly that.
func TestEnvtestAccessRecord(t *testing.T) {
	e := newSAEnv(t)
	pod, err := e.admin.CoreV1().Pods(e.ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-0"},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := e.admin.CoreV1().ServiceAccounts(e.ns).CreateToken(t.Context(), "app", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr(int64(3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := new(syncbuffer.Buffer)
	p := e.startProxy(t, tr.Status.Token, func(c *Config) {
		c.ReadOnly = true
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	start := time.Now().UTC().Truncate(time.Second)
	app := p.client(t)

	for range 3 {
		if _, err := app.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{}); err != nil {
			t.Fatalf("listing pods: %v", err)
		}
	}
	if _, err := app.CoreV1().Pods(e.ns).Get(t.Context(), pod.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("getting the pod: %v", err)
	}
	w, err := app.CoreV1().Pods(e.ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watching pods: %v", err)
	}
	w.Stop()
	if _, err := app.Discovery().ServerVersion(); err != nil {
		t.Fatalf("reading /version: %v", err)
	}
	if _, err := app.CoreV1().Secrets(e.ns).Get(t.Context(), "db", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("getting a secret: %v, want the API server's 403", err)
	}
	_, err = app.CoreV1().ConfigMaps(e.ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{})
	if s, ok := err.(apierrors.APIStatus); !ok || !strings.Contains(s.Status().Message, "--read-only") {
		t.Fatalf("creating a configmap: %v, want the proxy's read-only refusal", err)
	}

	code, body := p.do(t, "GET", AccessRecordPath, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", AccessRecordPath, code, body)
	}
	var rec accessrecord.Record
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Since.Before(start.Add(-time.Minute)) || rec.Since.After(start) {
		t.Errorf("since %v, want about %v", rec.Since, start)
	}
	for _, r := range rec.Requests {
		if r.LastSeen.Before(start) || r.LastSeen.After(time.Now()) {
			t.Errorf("%+v: lastSeen not in the test's time", r)
		}
	}
	want := accessrecord.Record{
		APIVersion: accessrecord.APIVersion, Kind: accessrecord.Kind,
		Namespace: e.ns, ServiceAccount: "app", Pod: pod.Name,
		Requests: []accessrecord.Request{
			{Verb: "get", NonResourceURL: "/version", Outcome: "allowed", Count: 1},
			{Verb: "create", Resource: "configmaps", Namespace: e.ns, Outcome: "refused", Count: 1},
			{Verb: "get", Resource: "pods", Namespace: e.ns, Outcome: "allowed", Count: 1},
			{Verb: "list", Resource: "pods", Namespace: e.ns, Outcome: "allowed", Count: 3},
			{Verb: "watch", Resource: "pods", Namespace: e.ns, Outcome: "allowed", Count: 1},
			{Verb: "get", Resource: "secrets", Namespace: e.ns, Outcome: "forbidden", Count: 1},
		},
	}
	if diff := cmp.Diff(want, rec, cmpopts.IgnoreFields(accessrecord.Record{}, "Since"), cmpopts.IgnoreFields(accessrecord.Request{}, "LastSeen")); diff != "" {
		t.Errorf("access record (-want +got):\n%s", diff)
	}

	t.Run("the 403 explains itself", func(t *testing.T) {
		var found int
		for l := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
			var v struct {
				Msg, ServiceAccount, RoleKind, Namespace string
				Rule                                     struct{ APIGroups, Resources, Verbs []string }
			}
			if json.Unmarshal([]byte(l), &v) != nil || !strings.HasPrefix(v.Msg, "the API server forbade a request") {
				continue
			}
			found++
			v.Msg = ""
			type rule = struct{ APIGroups, Resources, Verbs []string }
			want := struct {
				Msg, ServiceAccount, RoleKind, Namespace string
				Rule                                     rule
			}{"", "app", "Role", e.ns, rule{[]string{""}, []string{"secrets"}, []string{"get"}}}
			if diff := cmp.Diff(want, v); diff != "" {
				t.Errorf("explanation (-want +got):\n%s", diff)
			}
		}
		if found != 1 {
			t.Errorf("%d explanations of the 403 in the log, want 1:\n%s", found, logs)
		}
		if strings.Contains(logs.String(), tr.Status.Token) {
			t.Error("a log line holds the token")
		}
	})

	t.Run("metrics tell the proxy's refusals from the API server's answers", func(t *testing.T) {
		resp, err := http.Get("http://" + p.srv.HealthAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("parsing the exposition: %v", err)
		}
		got := map[string]float64{}
		for _, m := range fams["api_proxy_api_requests_total"].GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			got[l["verb"]+" "+l["resource"]+" "+l["outcome"]] = m.GetCounter().GetValue()
		}
		wantSeries := map[string]float64{
			"get /version allowed":           1,
			"create core/configmaps refused": 1,
			"get core/pods allowed":          1,
			"list core/pods allowed":         3,
			"watch core/pods allowed":        1,
			"get core/secrets forbidden":     1,
		}
		if diff := cmp.Diff(wantSeries, got); diff != "" {
			t.Errorf("api_proxy_api_requests_total (-want +got):\n%s", diff)
		}
		if bi := fams["api_proxy_build_info"].GetMetric(); len(bi) != 1 || bi[0].GetGauge().GetValue() != 1 || len(bi[0].GetLabel()) != 2 || bi[0].GetLabel()[0].GetValue() != runtime.Version() || bi[0].GetLabel()[1].GetValue() == "" {
			t.Errorf("api_proxy_build_info = %v, want one series of value 1 with goversion %s and a version", bi, runtime.Version())
		}
	})
}
