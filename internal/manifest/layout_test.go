package manifest

import (
	"strings"
	"testing"

	"github.com/api-access-injector/api-access-injector/injector"
)

// node is a YAML value for the layout generator: a mapping (keys, vals), a sequence (items) or
// a scalar, written in flow style or block style.
type node struct {
	keys  []string
	vals  []*node
	items []*node
	seq   bool
	text  string // a scalar, as written
	flow  bool
	// comment is written on the line before this value's key or dash (block only).
	comment string
}

func mapping(kv ...any) *node {
	n := &node{}
	for i := 0; i+1 < len(kv); i += 2 {
		n.keys = append(n.keys, kv[i].(string))
		v, ok := kv[i+1].(*node)
		if !ok {
			v = &node{text: kv[i+1].(string)}
		}
		n.vals = append(n.vals, v)
	}
	return n
}

func sequence(items ...*node) *node { return &node{seq: true, items: items} }

// layout says how the generator writes block collections.
type layout struct {
	indent int  // spaces per level
	wide   bool // sequences indented under their key
	blank  bool // a blank line after each top-level entry
	trail  bool // a trailing comment on scalar lines
}

func (n *node) isScalar() bool { return !n.seq && n.keys == nil }

func (n *node) flowText() string {
	switch {
	case n.seq:
		var parts []string
		for _, it := range n.items {
			parts = append(parts, it.flowText())
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case n.keys != nil:
		var parts []string
		for i, k := range n.keys {
			parts = append(parts, k+": "+n.vals[i].flowText())
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return n.text
}

// inline reports whether n is written on its key's line.
func (n *node) inline() bool {
	return n.flow || n.isScalar() || n.seq && len(n.items) == 0 || !n.seq && len(n.keys) == 0
}

func (n *node) inlineText() string {
	if n.isScalar() {
		return n.text
	}
	if n.seq && len(n.items) == 0 {
		return "[]"
	}
	if !n.seq && len(n.keys) == 0 {
		return "{}"
	}
	return n.flowText()
}

// block writes mapping n's entries at column col.
func (l layout) block(b *strings.Builder, n *node, col int, top bool, firstPrefix string) {
	pad := strings.Repeat(" ", col)
	for i, k := range n.keys {
		v := n.vals[i]
		prefix := pad
		if i == 0 && firstPrefix != "" {
			prefix = firstPrefix
		}
		if v.comment != "" && (i > 0 || firstPrefix == "") {
			b.WriteString(pad + "# " + v.comment + "\n")
		}
		b.WriteString(prefix + k + ":")
		l.value(b, v, col)
		if top && l.blank {
			b.WriteString("\n")
		}
	}
}

// value writes the value of a key at column col, from just after the colon.
func (l layout) value(b *strings.Builder, v *node, col int) {
	if v.inline() {
		b.WriteString(" " + v.inlineText())
		if l.trail && v.isScalar() {
			b.WriteString("  # note")
		}
		b.WriteString("\n")
		return
	}
	b.WriteString("\n")
	if !v.seq {
		l.block(b, v, col+l.indent, false, "")
		return
	}
	dash := col
	if l.wide {
		dash = col + l.indent
	}
	l.items(b, v, dash)
}

// items writes a block sequence's elements with their dash at column dash.
func (l layout) items(b *strings.Builder, v *node, dash int) {
	pad := strings.Repeat(" ", dash)
	for _, it := range v.items {
		if it.comment != "" {
			b.WriteString(pad + "# " + it.comment + "\n")
		}
		if it.inline() {
			b.WriteString(pad + "- " + it.inlineText() + "\n")
			continue
		}
		if it.seq {
			b.WriteString(pad + "-\n")
			l.items(b, it, dash+2)
			continue
		}
		l.block(b, it, dash+2, false, pad+"- ")
	}
}

// layoutPod writes one pod, or a workload or List holding it, in the layout the bits of
// choice pick, with the parts the injection adds to or changes present or not.
func layoutPod(choice uint64) string {
	bit := func(i int) bool { return choice>>i&1 == 1 }
	two := func(i int) int { return int(choice >> i & 3) }
	l := layout{indent: 2, wide: bit(1), blank: bit(13), trail: bit(12)}
	if bit(0) {
		l.indent = 4
	}
	q := func(s string) string {
		if bit(21) {
			return `"` + s + `"`
		}
		return s
	}
	annotations := mapping("apiaccess.io/inject", `"true"`)
	if bit(19) {
		annotations = mapping("apiaccess.io/inject", `"true"`, "apiaccess.io/isolate-token", `'true'`)
	}
	meta := mapping("name", q("p"))
	switch two(3) {
	case 1:
		meta = mapping("name", q("p"), "annotations", &node{keys: []string{}})
	case 2:
		meta = mapping("name", q("p"), "annotations", annotations)
	case 3:
		annotations.flow = true
		meta = mapping("name", q("p"), "labels", mapping("app", "p"), "annotations", annotations)
	}
	meta.flow = bit(2)
	app := mapping("name", q("app"), "image", q("registry.example.com/app:1"))
	switch two(6) {
	case 1:
		app.keys, app.vals = append(app.keys, "env"), append(app.vals, sequence())
	case 2, 3:
		env := sequence(mapping("name", "LOG", "value", q("debug")))
		env.flow = two(6) == 3
		app.keys, app.vals = append(app.keys, "env"), append(app.vals, env)
	}
	if bit(20) {
		mount := mapping("name", "kube-api-access-x", "mountPath", "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly", "true")
		app.keys, app.vals = append(app.keys, "volumeMounts"), append(app.vals, sequence(mount))
	}
	if bit(12) {
		app.vals[1].comment = "the image"
	}
	containers := sequence(app, mapping("name", "second", "image", "s", "args", sequence(&node{text: "--x"}, &node{text: "|-"})))
	containers.items[1].vals[2].items[1] = &node{text: "--z"}
	containers.flow = bit(5)
	spec := mapping("containers", containers)
	switch two(8) {
	case 1:
		spec.keys, spec.vals = append([]string{"initContainers"}, spec.keys...), append([]*node{sequence()}, spec.vals...)
	case 2, 3:
		init := sequence(mapping("name", "migrate", "image", "m"))
		if bit(12) {
			init.items[0].comment = "migrates first"
		}
		init.flow = two(8) == 3
		spec.keys, spec.vals = append([]string{"initContainers"}, spec.keys...), append([]*node{init}, spec.vals...)
	}
	var volumes *node
	switch two(10) {
	case 1:
		volumes = sequence()
	case 2, 3:
		volumes = sequence(mapping("name", "data", "emptyDir", &node{keys: []string{}}))
		volumes.flow = two(10) == 3
	}
	if bit(20) {
		token := mapping("name", "kube-api-access-x", "projected", mapping("sources", sequence(mapping("serviceAccountToken", mapping("path", "token")))))
		if volumes == nil || volumes.flow {
			volumes = sequence()
		}
		volumes.items = append(volumes.items, token)
	}
	if volumes != nil {
		spec.keys, spec.vals = append(spec.keys, "volumes"), append(spec.vals, volumes)
	}
	if bit(12) {
		spec.vals[0].comment = "the pod's first list"
	}
	obj := mapping("apiVersion", "v1", "kind", "Pod", "metadata", meta, "spec", spec)
	if bit(16) {
		obj = mapping("apiVersion", "v1", "kind", "Pod", "spec", spec, "metadata", meta)
	}
	if bit(17) {
		template := mapping("metadata", meta, "spec", spec)
		if two(3) == 0 && bit(18) {
			template = mapping("spec", spec) // no metadata at all
		}
		obj = mapping("apiVersion", "apps/v1", "kind", "Deployment", "metadata", mapping("name", "d"),
			"spec", mapping("selector", mapping("matchLabels", mapping("app", "p")), "template", template))
	} else if bit(18) {
		obj = mapping("apiVersion", "v1", "kind", "List", "items", sequence(mapping("apiVersion", "v1", "kind", "ConfigMap", "metadata", mapping("name", "c")), obj))
	}
	var b strings.Builder
	if bit(12) {
		b.WriteString("# generated layout\n")
	}
	l.block(&b, obj, 0, true, "")
	out := b.String()
	if bit(15) {
		out = strings.TrimRight(out, "\n")
	}
	if bit(14) {
		out = strings.ReplaceAll(out, "\n", "\r\n")
	}
	return out
}

// FuzzLayouts injects one pod written in the many layouts that layoutPod chooses from (block
// or flow at each level, 2 or 4 spaces, sequences indented or not, comments, blank lines,
// CRLF, no final newline, collections absent, empty or full, inside a Deployment or a List):
// every one must be injected, agree with the whole-document diff, be stable when injected
// again, and come back byte for byte from --uninject.
func FuzzLayouts(f *testing.F) {
	for _, c := range []uint64{0, 1<<22 - 1, 0x15555, 0x2aaaa, 0x3c0f0, 0x103f08, 0x1e0e0e, 0x0a0a0a, 0x3fffff &^ (1 << 14)} {
		f.Add(c)
	}
	opts := goldenOptions(f, "")
	opts.Mode = injector.ModeEnabled
	f.Fuzz(func(t *testing.T, choice uint64) {
		in := layoutPod(choice)
		out, _, err := InjectBytes([]byte(in), opts)
		if err != nil {
			t.Fatalf("layout %#x: %v\n%s", choice, err, in)
		}
		if !strings.Contains(string(out), "name: api-proxy") {
			t.Fatalf("layout %#x: not injected:\n%s", choice, out)
		}
		checkRoundTrip(t, []byte(in), out, opts)
	})
}

// TestLayoutsAll runs 62 layouts spread over all the choices, beyond the fuzz seeds.
func TestLayoutsAll(t *testing.T) {
	opts := goldenOptions(t, "")
	opts.Mode = injector.ModeEnabled
	for c := uint64(0); c < 1<<12; c += 67 {
		choice := c*0x9e3779b97f4a7c15>>40 | c // spread over the 22 bits
		choice &= 1<<22 - 1
		in := layoutPod(choice)
		out, _, err := InjectBytes([]byte(in), opts)
		if err != nil {
			t.Fatalf("layout %#x: %v\n%s", choice, err, in)
		}
		checkRoundTrip(t, []byte(in), out, opts)
		if t.Failed() {
			t.Fatalf("layout %#x:\n%s", choice, in)
		}
	}
}
