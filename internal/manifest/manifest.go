// Package manifest applies the injector to Kubernetes manifests offline: Pods and the pod
// templates of workloads, in multi-document YAML, by the same rules as the admission webhook,
// and takes such an injection back out.
//
// Each pod is decoded exactly as the webhook decodes it (the manifest turned into JSON as
// kubectl does, then case-sensitive field names and integers kept exact), mutated by the
// injector, and its patch derived by the same injector/patch Snapshot the webhook uses. The
// patch is then applied to the manifest's own text, node by node (see editor): comments,
// blank lines, key order, quoting and fields the injector's types do not know stay as they
// were, byte for byte, outside the nodes the patch adds or changes; documents, List items and
// objects with nothing to inject come out unchanged.
//
// So that committed manifests do not change when only the injector's version does, the status
// annotation of an offline injection records the version "offline" (OfflineVersion), and
// each injected pod template carries one comment line (the uninject record) from which
// Uninject restores the manifest's text exactly.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	jsonpatchapply "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/api-access-injector/api-access-injector/injector"
	"github.com/api-access-injector/api-access-injector/injector/patch"
)

// OfflineVersion is the injector version that offline injection records in the status
// annotation, in place of the binary's own: the output then depends on the manifest and the
// configuration only, and an upgrade of the injector gives no diff in committed manifests
// (the sidecar image does change when it follows the release; pin it with --sidecar-image
// or the configuration file for output that never moves). The webhook recognises the
// injection by the rest of the status (sidecar, volumes), whatever the version says, and
// writes its own version when it re-injects the pod at admission.
const OfflineVersion = "offline"

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
	// Injector does the mutation. Its configured version is replaced by OfflineVersion.
	Injector *injector.Injector
	// Mode stands in for the namespace label of every document's namespace.
	Mode injector.NamespaceMode
	// Namespace is used for documents that name none. It may be empty.
	Namespace string
}

// Inject reads YAML documents from r and writes them to w, injected where the rules say so
// (see InjectBytes).
//
// It is all or nothing: the output is written to w only once every document has been
// injected, so that a refusal (an error that names the object) leaves w untouched. A pipe
// into `kubectl apply -f -` then applies nothing rather than the documents before the refused
// one. Warnings are returned either way.
func Inject(r io.Reader, w io.Writer, opts Options) (warnings []string, err error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading YAML: %w", err)
	}
	out, warnings, err := InjectBytes(src, opts)
	if err != nil {
		return warnings, err
	}
	if _, err := w.Write(out); err != nil {
		return warnings, fmt.Errorf("writing the injected manifests: %w", err)
	}
	return warnings, nil
}

// InjectBytes injects the YAML documents of src and returns the whole text. The items of a
// List (kind List, as `kubectl get -o yaml` writes, or a typed list such as PodList whose
// items name their kind) are injected one by one. Everything the injection does not change
// is returned byte for byte: a text with nothing to inject comes back identical.
func InjectBytes(src []byte, opts Options) ([]byte, []string, error) {
	cfg := opts.Injector.Config()
	cfg.Version = OfflineVersion
	inj, err := injector.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts.Injector = inj
	var out bytes.Buffer
	var warnings []string
	for i, seg := range segments(src) {
		injected, warns, err := injectDocument(seg, opts)
		warnings = append(warnings, warns...)
		if err != nil {
			return nil, warnings, documentError(i, err)
		}
		out.Write(injected)
	}
	return out.Bytes(), warnings, nil
}

// Uninject reads YAML documents from r and writes them to w with the offline injections taken
// back out (see UninjectBytes). Like Inject, it writes nothing when it fails.
func Uninject(r io.Reader, w io.Writer) error {
	src, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading YAML: %w", err)
	}
	out, err := UninjectBytes(src)
	if err != nil {
		return err
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("writing the manifests: %w", err)
	}
	return nil
}

// UninjectBytes reverses InjectBytes: each pod template that carries an uninject record gets
// back the text it had before it was first injected, comments and layout included; everything
// else comes back byte for byte. A pod injected without a record (by the webhook, or edited
// since in the parts the injection wrote) is an error that names it.
func UninjectBytes(src []byte) ([]byte, error) {
	var out bytes.Buffer
	for i, seg := range segments(src) {
		restored, err := uninjectDocument(seg)
		if err != nil {
			return nil, documentError(i, err)
		}
		out.Write(restored)
	}
	return out.Bytes(), nil
}

func documentError(i int, err error) error {
	if errors.Is(err, errUnsupported) {
		return fmt.Errorf("document %d: %w", i+1, err)
	}
	return err
}

// segments splits a YAML stream into its documents' texts, each with the "---" line that
// opens it: joined again, they are the stream.
func segments(src []byte) [][]byte {
	var out [][]byte
	start := 0
	for o := 0; o < len(src); {
		end := bytes.IndexByte(src[o:], '\n')
		if end < 0 {
			end = len(src)
		} else {
			end += o + 1
		}
		line := src[o:end]
		if o > start && bytes.HasPrefix(line, []byte("---")) && (len(line) == 3 || strings.ContainsRune(" \t\r\n", rune(line[3]))) {
			out = append(out, src[start:o])
			start = o
		}
		o = end
	}
	return append(out, src[start:])
}

// target is a pod template in a document.
type target struct {
	tokens    []string // JSON pointer from the document's root
	what      string   // "Kind namespace/name", for messages
	namespace string   // the object's, or the default one
	template  json.RawMessage
	// hasMetadata is false for a template without metadata.
	hasMetadata bool
}

// targets finds the pod templates of a document (decoded as kubectl decodes YAML), and
// returns the warnings about misplaced annotations.
func targets(docJSON []byte, namespace string) ([]target, []string, error) {
	var obj map[string]json.RawMessage
	if sigsjson.UnmarshalCaseSensitivePreserveInts(docJSON, &obj) != nil || obj == nil {
		return nil, nil, nil // not an object: passed through
	}
	kind := stringField(obj, "kind")
	if rawItems, ok := obj["items"]; ok && strings.HasSuffix(kind, "List") {
		var items []json.RawMessage
		if sigsjson.UnmarshalCaseSensitivePreserveInts(rawItems, &items) != nil {
			return nil, nil, nil
		}
		var out []target
		var warnings []string
		for i, item := range items {
			var itemObj map[string]json.RawMessage
			if sigsjson.UnmarshalCaseSensitivePreserveInts(item, &itemObj) != nil || itemObj == nil {
				continue
			}
			t, warns, err := objectTarget(itemObj, namespace)
			for _, w := range warns {
				warnings = append(warnings, fmt.Sprintf("%s items[%d]: %s", kind, i, w))
			}
			if err != nil {
				return nil, warnings, fmt.Errorf("%s items[%d]: %w", kind, i, err)
			}
			if t != nil {
				t.tokens = append([]string{"items", fmt.Sprint(i)}, t.tokens...)
				out = append(out, *t)
			}
		}
		return out, warnings, nil
	}
	t, warnings, err := objectTarget(obj, namespace)
	if t == nil || err != nil {
		return nil, warnings, err
	}
	return []target{*t}, warnings, nil
}

// objectTarget returns the pod template of an object the injector handles, or nil.
func objectTarget(obj map[string]json.RawMessage, defaultNamespace string) (*target, []string, error) {
	apiVersion, kind := stringField(obj, "apiVersion"), stringField(obj, "kind")
	group, _, _ := strings.Cut(apiVersion, "/")
	if !strings.Contains(apiVersion, "/") {
		group = ""
	}
	path, ok := templatePaths[group+"/"+kind]
	if !ok {
		return nil, nil, nil
	}
	var meta struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Annotations  map[string]string `json:"annotations"`
	}
	_ = sigsjson.UnmarshalCaseSensitivePreserveInts(obj["metadata"], &meta) // only for messages
	name := meta.Name
	if name == "" {
		name = meta.GenerateName
	}
	namespace := meta.Namespace
	if namespace == "" {
		namespace = defaultNamespace
	}
	t := &target{tokens: path, what: kind + " " + name, namespace: namespace}
	if namespace != "" {
		t.what = kind + " " + namespace + "/" + name
	}
	raw := json.RawMessage(nil)
	for i, token := range path {
		var m map[string]json.RawMessage
		if i == 0 {
			m = obj
		} else if sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &m) != nil || m == nil {
			return nil, nil, fmt.Errorf("%s: %s: missing or not an object", t.what, strings.Join(path[:i], "."))
		}
		if raw, ok = m[token]; !ok {
			return nil, nil, fmt.Errorf("%s: %s: missing or not an object", t.what, strings.Join(path[:i+1], "."))
		}
	}
	if path == nil {
		var err error
		if raw, err = json.Marshal(obj); err != nil {
			return nil, nil, err
		}
	}
	t.template = raw
	var probe map[string]json.RawMessage
	_ = sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &probe)
	_, t.hasMetadata = probe["metadata"]
	var warnings []string
	if len(path) > 0 {
		var tmpl struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &tmpl) != nil {
			return nil, nil, fmt.Errorf("%s: %s: missing or not an object", t.what, strings.Join(path, "."))
		}
		if w := misplaced(meta.Annotations, tmpl.Metadata.Annotations, kind, strings.Join(path, ".")); w != "" {
			warnings = append(warnings, t.what+": "+w)
		}
	}
	return t, warnings, nil
}

func stringField(obj map[string]json.RawMessage, key string) string {
	var s string
	_ = json.Unmarshal(obj[key], &s)
	return s
}

// op is one operation of a JSON patch.
type op struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

// injectDocument injects the pod templates of one document's text.
func injectDocument(seg []byte, opts Options) ([]byte, []string, error) {
	docJSON, err := yaml.YAMLToJSON(seg)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing YAML document: %w", err)
	}
	pods, warnings, err := targets(docJSON, opts.Namespace)
	if err != nil || len(pods) == 0 {
		return seg, warnings, err
	}
	var ed *editor
	var allOps []op
	var snap patch.Snapshot
	for _, t := range pods {
		ops, warns, err := injectPod(&snap, t, opts)
		warnings = append(warnings, warns...)
		if err != nil {
			return nil, warnings, err
		}
		if len(ops) == 0 {
			continue
		}
		if ed == nil {
			if ed, err = newEditor(seg); err != nil {
				return nil, warnings, fmt.Errorf("%s: %w", t.what, err)
			}
		}
		if err := applyPod(ed, t, ops); err != nil {
			return nil, warnings, fmt.Errorf("%s: writing the injection into the manifest: %w", t.what, err)
		}
		if !t.hasMetadata { // the pod's JSON always has metadata, the template did not
			allOps = append(allOps, op{Op: "add", Path: pointer(t.tokens) + "/metadata", Value: json.RawMessage("{}")})
		}
		for _, o := range ops {
			o.Path = pointer(t.tokens) + o.Path
			allOps = append(allOps, o)
		}
	}
	if ed == nil {
		return seg, warnings, nil
	}
	// The text must decode, as kubectl decodes it, to what the patch gives: else it is not
	// written at all.
	if err := checkEdit(docJSON, ed.src, allOps); err != nil {
		return nil, warnings, fmt.Errorf("%s: %w", pods[0].what, err)
	}
	return ed.src, warnings, nil
}

// injectPod decodes a pod template as the webhook decodes a pod, runs the injector on it and
// returns the patch the Snapshot derives, relative to the template.
func injectPod(snap *patch.Snapshot, t target, opts Options) ([]op, []string, error) {
	var pod corev1.Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(t.template, &pod); err != nil {
		return nil, nil, fmt.Errorf("%s: decoding the pod: %w", t.what, err)
	}
	snap.Take(&pod)
	defer snap.Reset()
	res, err := opts.Injector.Mutate(injector.Namespace{Name: t.namespace, Mode: opts.Mode}, &pod)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", t.what, err)
	}
	var warnings []string
	for _, w := range res.Warnings {
		warnings = append(warnings, t.what+": "+w)
	}
	if !res.Inject {
		return nil, warnings, nil
	}
	raw, n, err := snap.AppendPatch(nil, &pod)
	if err != nil || n == 0 {
		return nil, warnings, err
	}
	var ops []op
	if err := json.Unmarshal(raw, &ops); err != nil {
		return nil, warnings, err
	}
	return ops, warnings, nil
}

// applyPod applies a pod's patch to its template in the editor's text and rewrites the
// template's uninject record: the operations that undo this patch, then those of the record
// it had.
func applyPod(ed *editor, t target, ops []op) error {
	old, err := takeRecord(ed, t.tokens)
	if err != nil {
		return err
	}
	var undos []undo
	for _, o := range ops {
		tokens := append(slices.Clone(t.tokens), parsePointer(o.Path)...)
		var u undo
		switch o.Op {
		case "add":
			u, err = ed.add(tokens, o.Value)
		case "replace":
			u, err = ed.replace(tokens, o.Value)
		case "remove":
			u, err = ed.remove(tokens)
		default:
			err = fmt.Errorf("operation %q is not one the injector writes", o.Op)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", o.Op, o.Path, err)
		}
		if u.Op == "remove" {
			if n, _, err := ed.find(parsePointer(u.Path)); err == nil && n != nil {
				u.Names = elementNames(n)
			}
		}
		u.Path = strings.TrimPrefix(u.Path, pointer(t.tokens))
		undos = append(undos, u)
	}
	if ed.json {
		return nil // no comment in JSON: JSON documents cannot be uninjected
	}
	slices.Reverse(undos)
	return putRecord(ed, t.tokens, append(undos, old...))
}

// checkEdit checks that the edited text decodes to the original document with the operations
// applied, both as kubectl reads YAML.
func checkEdit(docJSON, edited []byte, ops []op) error {
	opsJSON, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	p, err := jsonpatchapply.DecodePatch(opsJSON)
	if err != nil {
		return err
	}
	want, err := p.Apply(docJSON)
	if err != nil {
		return fmt.Errorf("applying the injection: %w", err)
	}
	got, err := yaml.YAMLToJSON(edited)
	if err != nil {
		return fmt.Errorf("the injected text does not parse: %w", err)
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return err
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return err
	}
	if !reflect.DeepEqual(w, g) {
		return fmt.Errorf("the injected text does not decode to the injected object: %w", errUnsupported)
	}
	return nil
}

// uninjectDocument takes the offline injections out of one document's text.
func uninjectDocument(seg []byte) ([]byte, error) {
	docJSON, err := yaml.YAMLToJSON(seg)
	if err != nil {
		return nil, fmt.Errorf("parsing YAML document: %w", err)
	}
	pods, _, err := targets(docJSON, "")
	if err != nil || len(pods) == 0 {
		return seg, err
	}
	var ed *editor
	for _, t := range slices.Backward(pods) {
		var pod corev1.Pod
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(t.template, &pod); err != nil {
			return nil, fmt.Errorf("%s: decoding the pod: %w", t.what, err)
		}
		if _, ok := pod.Annotations[injector.StatusAnnotation]; !ok {
			continue
		}
		if ed == nil {
			if ed, err = newEditor(seg); err != nil {
				return nil, fmt.Errorf("%s: %w", t.what, err)
			}
		}
		undos, err := takeRecord(ed, t.tokens)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.what, err)
		}
		if undos == nil && ed.json {
			return nil, fmt.Errorf("%s: a JSON document has no place for the record that --uninject needs (a comment), so inject writes none", t.what)
		}
		if undos == nil {
			return nil, fmt.Errorf("%s: it has the %s annotation but no uninject record (a line %q before its metadata): "+
				"it was not injected by this command, or the record was removed", t.what, injector.StatusAnnotation, recordPrefix+"...")
		}
		for _, u := range undos {
			u.Path = pointer(t.tokens) + u.Path
			switch u.Op {
			case "remove":
				err = ed.delete(u)
			case "replace":
				err = ed.restore(u)
			case "insert":
				err = ed.insertText(u)
			default:
				err = fmt.Errorf("unknown operation %q", u.Op)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: uninject record: %s %s: %w (was the manifest edited since it was injected?)", t.what, u.Op, u.Path, err)
			}
		}
	}
	if ed == nil {
		return seg, nil
	}
	return ed.src, nil
}

// misplaced warns about apiaccess.io/ annotations on a workload's own metadata that its pod
// template lacks: there they have no effect
// (https://github.com/Azure/azure-workload-identity/issues/525). The text is the one the
// chart's workload-annotation-placement policy gives at apply; "" when there are none.
func misplaced(own, template map[string]string, kind, templatePath string) string {
	var keys []string
	for k := range own {
		if _, inTemplate := template[k]; strings.HasPrefix(k, injector.AnnotationPrefix) && !inTemplate {
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
