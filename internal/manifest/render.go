package manifest

import (
	"bytes"
	"encoding/json"
	"strings"

	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"
)

// compact writes JSON for a flow context: JSON is YAML, on one line.
func compact(value json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, value); err != nil {
		return string(value)
	}
	return b.String()
}

// toNode parses JSON into a YAML node tree in block style, key order kept.
func toNode(value json.RawMessage) (*kyaml.Node, error) {
	var doc kyaml.Node
	if err := kyaml.Unmarshal(value, &doc); err != nil {
		return nil, err
	}
	n := doc.Content[0]
	var unstyle func(*kyaml.Node)
	unstyle = func(n *kyaml.Node) {
		n.Style = 0
		// The name first, as people write list elements: the patch encodes some values
		// from maps, whose keys come sorted.
		if n.Kind == kyaml.MappingNode {
			for i := 2; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "name" {
					k, v := n.Content[i], n.Content[i+1]
					copy(n.Content[2:i+2], n.Content[0:i])
					n.Content[0], n.Content[1] = k, v
					break
				}
			}
		}
		if n.Kind == kyaml.ScalarNode && n.Tag == "!!str" && !plainAsKubectlReadsIt(n.Value) {
			n.Style = kyaml.DoubleQuotedStyle
		}
		for _, c := range n.Content {
			unstyle(c)
		}
	}
	unstyle(n)
	return n, nil
}

// plainAsKubectlReadsIt reports whether a string, as the YAML 1.2 encoder writes it when left
// to choose, reads back as the same string through sigs.k8s.io/yaml, which kubectl uses and
// which follows YAML 1.1: there a plain "yes", "on" or "0o7" is not a string. Those are
// double-quoted.
func plainAsKubectlReadsIt(s string) bool {
	if strings.ContainsAny(s, "\n\r") {
		return true // a block scalar: read as written
	}
	written, err := kyaml.Marshal(&kyaml.Node{Kind: kyaml.ScalarNode, Tag: "!!str", Value: s})
	if err != nil {
		return false
	}
	got, err := yaml.YAMLToJSON(append([]byte("k: "), written...))
	if err != nil {
		return false
	}
	want, err := json.Marshal(map[string]string{"k": s})
	return err == nil && bytes.Equal(got, want)
}

// flow renders a JSON value for a flow context, on one line: in YAML's flow style, or as JSON
// (which is YAML too) in a JSON document or when YAML would not fit on one line.
func (e *editor) flow(value json.RawMessage) string {
	if e.json {
		return compact(value)
	}
	n, err := toNode(value)
	if err != nil {
		return compact(value)
	}
	var set func(*kyaml.Node)
	set = func(n *kyaml.Node) {
		if n.Kind != kyaml.ScalarNode {
			n.Style = kyaml.FlowStyle
		}
		for _, c := range n.Content {
			set(c)
		}
	}
	set(n)
	out, err := encode(n, false)
	out = strings.TrimSuffix(out, "\n")
	if err != nil || strings.Contains(out, "\n") {
		return compact(value)
	}
	return out
}

func encode(n *kyaml.Node, wide bool) (string, error) {
	style := kyaml.CompactSequenceStyle
	if wide {
		style = kyaml.WideSequenceStyle
	}
	out, err := kyaml.MarshalWithOptions(n, &kyaml.EncoderOptions{SeqIndent: style})
	return string(out), err
}

// renderScalar renders a string as a YAML scalar on one line.
func renderScalar(s string) (string, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return renderInline(raw)
}

// renderInline renders a JSON scalar for a place inside a line: as YAML writes it when that
// fits on one line, else as JSON (a double-quoted YAML scalar).
func renderInline(value json.RawMessage) (string, error) {
	n, err := toNode(value)
	if err != nil {
		return "", err
	}
	out, err := encode(n, false)
	if err != nil {
		return "", err
	}
	out = strings.TrimSuffix(out, "\n")
	if strings.Contains(out, "\n") || strings.HasPrefix(out, "|") || strings.HasPrefix(out, ">") {
		return compact(value), nil
	}
	return out, nil
}

// renderEntry renders key: value as block lines indented by indent spaces.
func (e *editor) renderEntry(key string, value json.RawMessage, indent int) (string, error) {
	n, err := toNode(value)
	if err != nil {
		return "", err
	}
	m := &kyaml.Node{Kind: kyaml.MappingNode, Content: []*kyaml.Node{{Kind: kyaml.ScalarNode, Tag: "!!str", Value: key}, n}}
	out, err := encode(m, e.wide)
	if err != nil {
		return "", err
	}
	return indentLines(out, indent), nil
}

// renderElement renders value as a block sequence element, its dash indented by indent.
func renderElement(value json.RawMessage, indent int, wide bool) (string, error) {
	n, err := toNode(value)
	if err != nil {
		return "", err
	}
	out, err := encode(&kyaml.Node{Kind: kyaml.SequenceNode, Content: []*kyaml.Node{n}}, wide)
	if err != nil {
		return "", err
	}
	return indentLines(out, indent), nil
}

// indentLines indents every non-empty line of text by n spaces.
func indentLines(text string, n int) string {
	if n == 0 {
		return text
	}
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for line := range strings.Lines(text) {
		if strings.TrimSpace(line) != "" {
			b.WriteString(pad)
		}
		b.WriteString(line)
	}
	return b.String()
}
