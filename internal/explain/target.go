package explain

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds maps what a user may type (kubectl's names and short names) to a kind, and each kind
// to where its pod template is, as JSON keys ("" for a Pod).
var kinds = []struct {
	kind     string
	names    []string
	template []string
}{
	{"Pod", []string{"pod", "pods", "po"}, nil},
	{"Deployment", []string{"deployment", "deployments", "deploy"}, []string{"spec", "template"}},
	{"StatefulSet", []string{"statefulset", "statefulsets", "sts"}, []string{"spec", "template"}},
	{"DaemonSet", []string{"daemonset", "daemonsets", "ds"}, []string{"spec", "template"}},
	{"ReplicaSet", []string{"replicaset", "replicasets", "rs"}, []string{"spec", "template"}},
	{"ReplicationController", []string{"replicationcontroller", "replicationcontrollers", "rc"}, []string{"spec", "template"}},
	{"Job", []string{"job", "jobs"}, []string{"spec", "template"}},
	{"CronJob", []string{"cronjob", "cronjobs", "cj"}, []string{"spec", "jobTemplate", "spec", "template"}},
}

func kindOf(typed string) (string, error) {
	for _, k := range kinds {
		if slices.Contains(k.names, strings.ToLower(typed)) || strings.EqualFold(typed, k.kind) {
			return k.kind, nil
		}
	}
	var allowed []string
	for _, k := range kinds {
		allowed = append(allowed, k.names[0])
	}
	return "", fmt.Errorf("resource type %q: must be one of %s", typed, strings.Join(allowed, ", "))
}

// ClusterTarget reads a pod or workload from the cluster. ref is NAME (a pod) or TYPE/NAME.
func (e *Explainer) ClusterTarget(ctx context.Context, namespace, ref string) (Target, error) {
	typed, name, found := strings.Cut(ref, "/")
	if !found {
		typed, name = "pod", ref
	}
	if name == "" {
		return Target{}, fmt.Errorf("%q: a name is missing: give NAME or TYPE/NAME", ref)
	}
	kind, err := kindOf(typed)
	if err != nil {
		return Target{}, err
	}
	t := Target{Object: Object{Kind: kind, Namespace: namespace, Name: name, Source: "cluster"}}
	get := metav1.GetOptions{}
	var tmpl corev1.PodTemplateSpec
	switch kind {
	case "Pod":
		pod, err := e.client.CoreV1().Pods(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		t.Pod, t.Live = pod, true
		return t, nil
	case "Deployment":
		o, err := e.client.AppsV1().Deployments(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		tmpl = o.Spec.Template
	case "StatefulSet":
		o, err := e.client.AppsV1().StatefulSets(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		tmpl = o.Spec.Template
	case "DaemonSet":
		o, err := e.client.AppsV1().DaemonSets(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		tmpl = o.Spec.Template
	case "ReplicaSet":
		o, err := e.client.AppsV1().ReplicaSets(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		tmpl = o.Spec.Template
	case "ReplicationController":
		o, err := e.client.CoreV1().ReplicationControllers(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		if o.Spec.Template != nil {
			tmpl = *o.Spec.Template
		}
	case "Job":
		o, err := e.client.BatchV1().Jobs(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		tmpl = o.Spec.Template
	case "CronJob":
		o, err := e.client.BatchV1().CronJobs(namespace).Get(ctx, name, get)
		if err != nil {
			return Target{}, err
		}
		tmpl = o.Spec.JobTemplate.Spec.Template
	}
	t.Pod = podOf(tmpl, namespace, name)
	return t, nil
}

// podOf makes the pod a workload would create from its template.
func podOf(tmpl corev1.PodTemplateSpec, namespace, owner string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: owner + "-", Namespace: namespace,
			Labels: tmpl.Labels, Annotations: tmpl.Annotations,
		},
		Spec: tmpl.Spec,
	}
}

// FileTargets reads the pods and workloads of multi-document YAML (or JSON); other objects
// are skipped. Objects that name no namespace are taken to be in namespace.
func FileTargets(r io.Reader, source, namespace string) ([]Target, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []Target
	for n := 1; ; n++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading YAML: %w", source, err)
		}
		raw, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, n, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("%s: document %d is not an object: %w", source, n, err)
		}
		kind, _ := obj["kind"].(string)
		var path []string
		known := false
		for _, k := range kinds {
			if k.kind == kind {
				path, known = k.template, true
			}
		}
		if !known {
			continue
		}
		var meta metav1.ObjectMeta
		if err := remarshal(obj["metadata"], &meta); err != nil {
			return nil, fmt.Errorf("%s: document %d: metadata: %w", source, n, err)
		}
		if meta.Namespace == "" {
			meta.Namespace = namespace
		}
		t := Target{Object: Object{Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Source: source}}
		if t.Object.Name == "" {
			t.Object.Name = meta.GenerateName
		}
		var sub any = obj
		for _, key := range path {
			m, _ := sub.(map[string]any)
			sub = m[key]
		}
		if path == nil {
			pod := &corev1.Pod{}
			if err := remarshal(obj, pod); err != nil {
				return nil, fmt.Errorf("%s: %s %s: %w", source, kind, t.Object.Name, err)
			}
			pod.Namespace = meta.Namespace
			t.Pod = pod
		} else {
			var tmpl corev1.PodTemplateSpec
			if err := remarshal(sub, &tmpl); err != nil {
				return nil, fmt.Errorf("%s: %s %s: pod template: %w", source, kind, t.Object.Name, err)
			}
			t.Pod = podOf(tmpl, meta.Namespace, t.Object.Name)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no Pod and no workload with a pod template", source)
	}
	return out, nil
}

// remarshal decodes in into out as the API server would decode it: field names are matched
// case-sensitively (a field spelled with other capitals is unknown, and dropped), and integers
// stay integers.
func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return sigsjson.UnmarshalCaseSensitivePreserveInts(b, out)
}
