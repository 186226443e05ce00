// Package manifest applies the injector to Kubernetes manifests offline: Pods and the pod
// templates of workloads, in multi-document YAML, by the same rules as the admission webhook.
//
// Each document is changed by a JSON patch computed the way the webhook computes it, so
// fields the injector's types do not know, and the objects it does not handle, come out
// unchanged.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/injector/patch"
)

// templatePaths gives, by apiVersion group and kind, where an object keeps its pod template
// (as JSON pointer tokens); "" is the object itself.
var templatePaths = map[string][]string{
	"/Pod":                   nil,
	"apps/Deployment":        {"spec", "template"},
	"apps/StatefulSet":       {"spec", "template"},
	"apps/DaemonSet":         {"spec", "template"},
	"apps/ReplicaSet":        {"spec", "template"},
	"batch/Job":              {"spec", "template"},
	"batch/CronJob":          {"spec", "jobTemplate", "spec", "template"},
	"/ReplicationController": {"spec", "template"},
}

// Options tell Inject how to treat the documents.
type Options struct {
	// Injector does the mutation.
	Injector *injector.Injector
	// Mode stands in for the namespace label of every document's namespace.
	Mode injector.NamespaceMode
	// Namespace is used for documents that name none. It may be empty.
	Namespace string
}

// Inject reads YAML documents from r and writes them to w, injected where the rules say so.
// The items of a List (kind List, as `kubectl get -o yaml` writes, or a typed list such as
// PodList whose items name their kind) are injected one by one.
//
// It is all or nothing: the output is written to w only once every document has been
// injected, so that a refusal (an error that names the object) leaves w untouched. A pipe
// into `kubectl apply -f -` then applies nothing rather than the documents before the refused
// one. Warnings are returned either way.
func Inject(r io.Reader, w io.Writer, opts Options) (warnings []string, err error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out bytes.Buffer
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return warnings, fmt.Errorf("reading YAML: %w", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		injected, warns, err := injectDocument(doc, opts)
		warnings = append(warnings, warns...)
		if err != nil {
			return warnings, err
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(injected)
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return warnings, fmt.Errorf("writing the injected manifests: %w", err)
	}
	return warnings, nil
}

// injectDocument injects one YAML document: an object, or a list of objects. A document with
// nothing to inject comes back as it was, comments and layout included.
func injectDocument(doc []byte, opts Options) ([]byte, []string, error) {
	raw, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing YAML document: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return doc, nil, nil // not an object: pass it through untouched
	}
	items, isList := listItems(obj)
	if !isList {
		patched, warnings, err := injectObject(raw, obj, opts)
		if err != nil || patched == nil {
			return doc, warnings, err
		}
		out, err := yaml.JSONToYAML(patched)
		return out, warnings, err
	}
	var warnings []string
	changed := false
	for i, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		itemRaw, err := json.Marshal(m)
		if err != nil {
			return nil, warnings, err
		}
		patched, warns, err := injectObject(itemRaw, m, opts)
		for _, w := range warns {
			warnings = append(warnings, fmt.Sprintf("%s items[%d]: %s", obj["kind"], i, w))
		}
		if err != nil {
			return nil, warnings, fmt.Errorf("%s items[%d]: %w", obj["kind"], i, err)
		}
		if patched == nil {
			continue
		}
		var v any
		if err := json.Unmarshal(patched, &v); err != nil {
			return nil, warnings, err
		}
		items[i] = v
		changed = true
	}
	if !changed {
		return doc, warnings, nil
	}
	obj["items"] = items
	listJSON, err := json.Marshal(obj)
	if err != nil {
		return nil, warnings, err
	}
	out, err := yaml.JSONToYAML(listJSON)
	return out, warnings, err
}

// listItems returns the items of a list document: kind List (apiVersion v1), or a kind ending
// in List with an items array, as kubectl reads them
// (https://kubernetes.io/docs/reference/using-api/api-concepts/#collections).
func listItems(obj map[string]any) ([]any, bool) {
	kind, _ := obj["kind"].(string)
	if !strings.HasSuffix(kind, "List") {
		return nil, false
	}
	items, ok := obj["items"].([]any)
	if !ok && obj["items"] == nil && kind == "List" {
		return nil, true // an empty List
	}
	return items, ok
}

// injectObject injects one object, raw being its JSON. It returns the injected JSON, or nil
// when the object is not one the injector handles or is not injected.
func injectObject(raw []byte, obj map[string]any, opts Options) ([]byte, []string, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group, _, _ := strings.Cut(apiVersion, "/")
	if !strings.Contains(apiVersion, "/") {
		group = ""
	}
	path, ok := templatePaths[group+"/"+kind]
	if !ok {
		return nil, nil, nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name == "" {
		name, _ = meta["generateName"].(string)
	}
	namespace, _ := meta["namespace"].(string)
	if namespace == "" {
		namespace = opts.Namespace
	}
	what := fmt.Sprintf("%s %s", kind, name)
	if namespace != "" {
		what = fmt.Sprintf("%s %s/%s", kind, namespace, name)
	}

	template, err := lookup(obj, path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	var warnings []string
	if len(path) > 0 {
		if w := misplaced(obj, template, kind, strings.Join(path, ".")); w != "" {
			warnings = append(warnings, what+": "+w)
		}
	}

	templateJSON, err := json.Marshal(template)
	if err != nil {
		return nil, nil, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(templateJSON, &pod); err != nil {
		return nil, nil, fmt.Errorf("%s: decoding the pod: %w", what, err)
	}
	original, err := json.Marshal(&pod)
	if err != nil {
		return nil, nil, err
	}
	res, err := opts.Injector.Mutate(injector.Namespace{Name: namespace, Mode: opts.Mode}, &pod)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: %w", what, err)
	}
	for _, w := range res.Warnings {
		warnings = append(warnings, what+": "+w)
	}
	if !res.Inject {
		return nil, warnings, nil
	}
	mutated, err := json.Marshal(&pod)
	if err != nil {
		return nil, warnings, err
	}
	ops, err := patch.Diff(original, mutated)
	if err != nil {
		return nil, warnings, err
	}
	prefix := ""
	for _, token := range path {
		prefix += "/" + token
	}
	if _, ok := template["metadata"]; !ok {
		template["metadata"] = map[string]any{}
		if raw, err = json.Marshal(obj); err != nil {
			return nil, warnings, err
		}
	}
	for i := range ops {
		ops[i].Path = prefix + ops[i].Path
	}
	opsJSON, err := json.Marshal(ops)
	if err != nil {
		return nil, warnings, err
	}
	p, err := jsonpatchapply.DecodePatch(opsJSON)
	if err != nil {
		return nil, warnings, err
	}
	patched, err := p.Apply(raw)
	if err != nil {
		return nil, warnings, fmt.Errorf("%s: applying the injection: %w", what, err)
	}
	return patched, warnings, nil
}

// misplaced warns about apiaccess.io/ annotations on a workload's own metadata that its pod
// template lacks: there they have no effect
// (https://github.com/Azure/azure-workload-identity/issues/525). The text is the one the
// chart's workload-annotation-placement policy gives at apply; "" when there are none.
func misplaced(obj, template map[string]any, kind, templatePath string) string {
	var keys []string
	for k := range annotations(obj) {
		if _, inTemplate := annotations(template)[k]; strings.HasPrefix(k, injector.AnnotationPrefix) && !inTemplate {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	switch len(keys) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("annotation %s is on the %s itself, where it has no effect; put it in %s.metadata.annotations", keys[0], kind, templatePath)
	}
	return fmt.Sprintf("annotations %s are on the %s itself, where they have no effect; put them in %s.metadata.annotations",
		strings.Join(keys, ", "), kind, templatePath)
}

// lookup walks obj along path to the pod template.
func lookup(obj map[string]any, path []string) (map[string]any, error) {
	cur := obj
	for i, token := range path {
		next, ok := cur[token].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: missing or not an object", strings.Join(path[:i+1], "."))
		}
		cur = next
	}
	return cur, nil
}

func annotations(obj map[string]any) map[string]any {
	meta, _ := obj["metadata"].(map[string]any)
	a, _ := meta["annotations"].(map[string]any)
	return a
}

// stripComments drops comment-only lines, so that a document of comments counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}
