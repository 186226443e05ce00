package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// The range kinds that an undo operation names, so that it restores exactly the text that the
// operation replaced: a block entry or element, or a node's own text.
const (
	rangeBlock = "block"
	rangeOwn   = "own"
)

// undo is one operation of the record that reverses an injection (see record.go).
type undo struct {
	// Op is "remove" (delete the node at Path, which the injection added), "replace" (put
	// Text back in place of the node at Path, its block entry or element or its own text as
	// Range says) or "insert" (put Text back as the Index-th entry or element of the block
	// collection at Path, Gap lines of comments after the one before it; in a flow
	// collection, Gap bytes after its opening bracket).
	Op    string `json:"op"`
	Path  string `json:"path"`
	Range string `json:"range,omitempty"`
	Index int    `json:"index,omitempty"`
	Gap   int    `json:"gap,omitempty"`
	Text  string `json:"text,omitempty"`
	// Names are, for a remove, the names of the list elements the injection added there
	// (the element's own, or those of a list it added whole): checked before removing, so
	// that an element added since, which shifted the indices, is never taken for ours.
	Names []string `json:"names,omitempty"`
}

// elementNames returns the name of a list element, or the names of a list's elements.
func elementNames(n *kyaml.Node) []string {
	name := func(m *kyaml.Node) (string, bool) {
		if m.Kind != kyaml.MappingNode {
			return "", false
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "name" && m.Content[i+1].Kind == kyaml.ScalarNode {
				return m.Content[i+1].Value, true
			}
		}
		return "", false
	}
	if v, ok := name(n); ok {
		return []string{v}
	}
	if n.Kind != kyaml.SequenceNode {
		return nil
	}
	var out []string
	for _, c := range n.Content {
		if v, ok := name(c); ok {
			out = append(out, v)
		}
	}
	return out
}

// add sets the value at tokens (a JSON patch "add"): a new key of a mapping, an element
// inserted into a sequence, or the value of a key that exists. value is JSON. It returns the
// operation that undoes it.
func (e *editor) add(tokens []string, value json.RawMessage) (undo, error) {
	node, found, err := e.find(tokens)
	if err != nil {
		return undo{}, err
	}
	if node != nil {
		if p, ok := e.parents[node]; ok && p.node.Kind == kyaml.SequenceNode {
			return e.insertElement(tokens, p.node, p.index, value)
		}
		// An existing key: JSON patch's add replaces its value.
		return e.replace(tokens, value)
	}
	if found < len(tokens)-1 {
		// Missing parents (a template without metadata): add the innermost existing one's
		// new key with the nested value.
		for i := len(tokens) - 1; i > found; i-- {
			value, err = json.Marshal(map[string]json.RawMessage{tokens[i]: value})
			if err != nil {
				return undo{}, err
			}
		}
		tokens = tokens[:found+1]
	}
	parent, _, err := e.find(tokens[:len(tokens)-1])
	if err != nil {
		return undo{}, err
	}
	if parent == nil {
		return undo{}, fmt.Errorf("%s: no such parent", pointer(tokens))
	}
	last := tokens[len(tokens)-1]
	if parent.Style&kyaml.FlowStyle != 0 && len(parent.Content) == 0 && e.blockEntry(parent) {
		// An empty [] or {} that is a block entry's value: the entry is written again as a
		// block, which reads better than JSON in flow style.
		if parent.Kind == kyaml.SequenceNode {
			value = json.RawMessage("[" + string(value) + "]")
		} else if value, err = json.Marshal(map[string]json.RawMessage{last: value}); err != nil {
			return undo{}, err
		}
		return e.replace(tokens[:len(tokens)-1], value)
	}
	switch parent.Kind {
	case kyaml.SequenceNode:
		k, err := strconv.Atoi(last)
		if last == "-" {
			k, err = len(parent.Content), nil
		}
		if err != nil || k != len(parent.Content) {
			return undo{}, fmt.Errorf("%s: index out of range", pointer(tokens))
		}
		elem := append(append([]string(nil), tokens[:len(tokens)-1]...), strconv.Itoa(k))
		return e.insertElement(elem, parent, k, value)
	case kyaml.MappingNode:
		return e.addKey(tokens, parent, last, value)
	}
	return undo{}, fmt.Errorf("%s: the parent is not a mapping or a sequence", pointer(tokens))
}

// flowAppend returns where a new last member of flow collection c goes: just after the last
// one's text, or inside the brackets of an empty one.
func (e *editor) flowAppend(c *kyaml.Node) (int, error) {
	if len(c.Content) > 0 {
		if end, own, err := e.ownEnd(c.Content[len(c.Content)-1]); err != nil || own {
			return end, err
		}
	}
	end, err := e.flowEnd(e.offset(c))
	return end - 1, err
}

// blockEntry reports whether n is the value of an entry of a block mapping.
func (e *editor) blockEntry(n *kyaml.Node) bool {
	p, ok := e.parents[n]
	return ok && p.node.Kind == kyaml.MappingNode && p.node.Style&kyaml.FlowStyle == 0 && p.index%2 == 1
}

// addKey appends key: value to mapping m, at tokens.
func (e *editor) addKey(tokens []string, m *kyaml.Node, key string, value json.RawMessage) (undo, error) {
	u := undo{Op: "remove", Path: pointer(tokens)}
	keyText, err := renderScalar(key)
	if err != nil {
		return u, err
	}
	if m.Style&kyaml.FlowStyle != 0 {
		at, err := e.flowAppend(m)
		if err != nil {
			return u, err
		}
		if e.json {
			raw, _ := json.Marshal(key)
			keyText = string(raw)
		}
		text := keyText + ": " + e.flow(value)
		if len(m.Content) > 0 {
			text = ", " + text
		}
		return u, e.splice(at, at, text)
	}
	if len(m.Content) == 0 {
		return u, fmt.Errorf("%s: %w (empty block mapping)", pointer(tokens), errUnsupported)
	}
	lastKey := m.Content[len(m.Content)-2]
	if !e.startsLine(e.offset(lastKey)) && lastKey != m.Content[0] {
		return u, fmt.Errorf("%s: %w (several entries on one line)", pointer(tokens), errUnsupported)
	}
	at, err := e.blockEnd(m.Content[len(m.Content)-1], e.offset(lastKey))
	if err != nil {
		return u, err
	}
	text, err := e.renderEntry(key, value, m.Content[0].Column-1)
	if err != nil {
		return u, err
	}
	return u, e.insertLines(at, text)
}

// insertLines inserts whole lines at offset at, which is a line start or the end of a text
// that may lack its final newline.
func (e *editor) insertLines(at int, text string) error {
	text = e.nl(text)
	if at == len(e.src) && len(e.src) > 0 && e.src[len(e.src)-1] != '\n' {
		return e.splice(at, at, e.nl("\n")+strings.TrimSuffix(text, e.nl("\n")))
	}
	return e.splice(at, at, text)
}

// nl gives rendered text the document's line ends: CRLF in a document written with them.
func (e *editor) nl(text string) string {
	if !e.crlf || strings.Contains(text, "\r\n") {
		return text
	}
	return strings.ReplaceAll(text, "\n", "\r\n")
}

// deleteLines deletes src[from:to], whole lines; at the end of a text without a final newline,
// the newline before them goes too (insertLines added it).
func (e *editor) deleteLines(from, to int) error {
	if to == len(e.src) && from > 0 && len(e.src) > 0 && e.src[len(e.src)-1] != '\n' && e.src[from-1] == '\n' {
		from--
		if e.crlf && from > 0 && e.src[from-1] == '\r' {
			from--
		}
	}
	return e.splice(from, to, "")
}

// insertElement inserts value as element k of sequence s; tokens is the new element's path.
func (e *editor) insertElement(tokens []string, s *kyaml.Node, k int, value json.RawMessage) (undo, error) {
	u := undo{Op: "remove", Path: pointer(tokens)}
	if s.Style&kyaml.FlowStyle != 0 {
		text := e.flow(value)
		if k < len(s.Content) {
			at, err := e.start(s.Content[k])
			if err != nil {
				return u, err
			}
			return u, e.splice(at, at, text+", ")
		}
		at, err := e.flowAppend(s)
		if err != nil {
			return u, err
		}
		if len(s.Content) > 0 {
			text = ", " + text
		}
		return u, e.splice(at, at, text)
	}
	if len(s.Content) == 0 {
		return u, fmt.Errorf("%s: %w (empty block sequence)", pointer(tokens), errUnsupported)
	}
	first, err := e.dash(s.Content[0])
	if err != nil {
		return u, err
	}
	if !e.startsLine(first) {
		return u, fmt.Errorf("%s: %w (a sequence that starts inside a line)", pointer(tokens), errUnsupported)
	}
	indent := first - e.lines[e.lineOf(first)]
	var at int
	if k < len(s.Content) {
		d, err := e.dash(s.Content[k])
		if err != nil {
			return u, err
		}
		l := e.lineOf(d)
		// Above the comments that head the element, so that they stay with it.
		for l > 0 && !e.content(l-1) && len(bytes.TrimSpace(e.line(l-1))) > 0 && indentOf(e.line(l-1)) == indent {
			l--
		}
		at = e.lines[l]
	} else {
		last := s.Content[len(s.Content)-1]
		d, err := e.dash(last)
		if err != nil {
			return u, err
		}
		if at, err = e.blockEnd(last, d); err != nil {
			return u, err
		}
	}
	text, err := renderElement(value, indent, e.wide)
	if err != nil {
		return u, err
	}
	return u, e.insertLines(at, text)
}

// replace replaces the node at tokens by value, JSON.
func (e *editor) replace(tokens []string, value json.RawMessage) (undo, error) {
	node, _, err := e.find(tokens)
	if err != nil {
		return undo{}, err
	}
	if node == nil {
		return undo{}, fmt.Errorf("%s: no such node", pointer(tokens))
	}
	u := undo{Op: "replace", Path: pointer(tokens)}
	p, hasParent := e.parents[node]
	scalar := len(value) > 0 && value[0] != '{' && value[0] != '['
	from := e.offset(node)
	end, own, err := e.ownEnd(node)
	if err != nil {
		return u, err
	}
	emptyFlow := node.Style&kyaml.FlowStyle != 0 && len(node.Content) == 0
	inFlow := hasParent && p.node.Style&kyaml.FlowStyle != 0
	// In place when the parent is flow, or a scalar replaces a scalar, or a collection a
	// flow collection with something in it; else as a block entry or element.
	if inFlow || own && (scalar && node.Kind == kyaml.ScalarNode || !scalar && node.Kind != kyaml.ScalarNode && !emptyFlow) {
		var text string
		if scalar && !e.json {
			text, err = renderInline(value)
		} else {
			text = e.flow(value)
		}
		if err != nil {
			return u, err
		}
		if !own {
			return u, fmt.Errorf("%s: %w", pointer(tokens), errUnsupported)
		}
		u.Range, u.Text = rangeOwn, string(e.src[from:end])
		return u, e.splice(from, end, text)
	}
	if !hasParent {
		return u, fmt.Errorf("the document root: %w", errUnsupported)
	}
	// The whole block entry or element, rendered again.
	from, err = e.start(node)
	if err != nil {
		return u, err
	}
	if !e.startsLine(from) {
		return u, fmt.Errorf("%s: %w (the first entry of a sequence element)", pointer(tokens), errUnsupported)
	}
	end, err = e.blockEnd(node, from)
	if err != nil {
		return u, err
	}
	indent := from - e.lines[e.lineOf(from)]
	var text string
	if p.node.Kind == kyaml.SequenceNode {
		text, err = renderElement(value, indent, e.wide)
	} else {
		text, err = e.renderEntry(p.node.Content[p.index-1].Value, value, indent)
	}
	if err != nil {
		return u, err
	}
	u.Range, u.Text = rangeBlock, string(e.src[e.lines[e.lineOf(from)]:end])
	return u, e.splice(e.lines[e.lineOf(from)], end, e.nl(text))
}

// remove deletes the node at tokens and returns the operation that puts it back.
func (e *editor) remove(tokens []string) (undo, error) {
	node, _, err := e.find(tokens)
	if err != nil {
		return undo{}, err
	}
	p, ok := e.parents[node]
	if node == nil || !ok {
		return undo{}, fmt.Errorf("%s: no such node", pointer(tokens))
	}
	u := undo{Op: "insert", Path: pointer(tokens[:len(tokens)-1]), Index: p.index}
	if p.node.Kind == kyaml.MappingNode {
		u.Index = p.index / 2
	}
	if (len(p.node.Content) <= 2 && p.node.Kind == kyaml.MappingNode || len(p.node.Content) <= 1) && p.node.Style&kyaml.FlowStyle == 0 {
		// The block collection becomes empty: written [] or {} in its entry.
		if e.blockEntry(p.node) {
			empty := "[]"
			if p.node.Kind == kyaml.MappingNode {
				empty = "{}"
			}
			return e.replace(tokens[:len(tokens)-1], json.RawMessage(empty))
		}
		return u, fmt.Errorf("%s: %w (the last entry of its collection)", pointer(tokens), errUnsupported)
	}
	if p.node.Style&kyaml.FlowStyle != 0 {
		from, err := e.start(node)
		if err != nil {
			return u, err
		}
		if p.node.Kind == kyaml.MappingNode {
			from = e.offset(p.node.Content[p.index-1])
		}
		end, own, err := e.ownEnd(node)
		if err != nil || !own {
			return u, fmt.Errorf("%s: %w", pointer(tokens), errUnsupported)
		}
		// With the comma after it or, for the last one, before it.
		if i := bytes.IndexByte(e.src[end:], ','); i >= 0 && len(bytes.TrimSpace(e.src[end:end+i])) == 0 {
			end += i + 1
			for end < len(e.src) && e.src[end] == ' ' {
				end++
			}
		} else if i := bytes.LastIndexByte(e.src[:from], ','); i >= 0 && len(bytes.TrimSpace(e.src[i+1:from])) == 0 {
			from = i
		}
		u.Range, u.Text = rangeOwn, string(e.src[from:end])
		u.Gap = from - e.offset(p.node) // in flow, the offset from the collection's start
		return u, e.splice(from, end, "")
	}
	from, err := e.start(node)
	if err != nil {
		return u, err
	}
	if !e.startsLine(from) {
		return u, fmt.Errorf("%s: %w (the first entry of a sequence element)", pointer(tokens), errUnsupported)
	}
	end, err := e.blockEnd(node, from)
	if err != nil {
		return u, err
	}
	lineFrom := e.lines[e.lineOf(from)]
	// The lines of comments between the entry before and this one stay; Gap counts them.
	var prevEnd int
	step := 1
	if p.node.Kind == kyaml.MappingNode {
		step = 2
	}
	if before := p.index - step; before >= 0 { // the previous element, or entry's value
		if prevEnd, err = e.blockEnd(p.node.Content[before], e.offset(p.node.Content[before])); err != nil {
			return u, err
		}
	} else {
		prevEnd = e.collectionStart(p.node)
	}
	u.Gap = e.lineOf(lineFrom) - e.lineOf(prevEnd)
	u.Range, u.Text = rangeBlock, string(e.src[lineFrom:end])
	return u, e.deleteLines(lineFrom, end)
}

// collectionStart returns the start of the line after the one that opens block collection c
// (the line of its key), from which its first entry's comments count.
func (e *editor) collectionStart(c *kyaml.Node) int {
	p, ok := e.parents[c]
	if !ok {
		return e.lines[0]
	}
	if p.node.Kind == kyaml.MappingNode {
		return e.lineEnd(p.node.Content[p.index-1].Line - 1)
	}
	return e.lineEnd(c.Line - 1)
}

// insertText puts back the text a remove took out (undo op "insert").
func (e *editor) insertText(u undo) error {
	parent, _, err := e.find(parsePointer(u.Path))
	if err != nil {
		return err
	}
	if parent == nil || parent.Kind != kyaml.MappingNode && parent.Kind != kyaml.SequenceNode {
		return fmt.Errorf("%s: not a collection", u.Path)
	}
	if parent.Style&kyaml.FlowStyle != 0 {
		at := e.offset(parent) + u.Gap
		return e.splice(at, at, u.Text)
	}
	n := len(parent.Content)
	step := 1
	if parent.Kind == kyaml.MappingNode {
		n, step = n/2, 2
	}
	if u.Index > n {
		return fmt.Errorf("%s: index %d out of range", u.Path, u.Index)
	}
	var prevEnd int
	if u.Index > 0 {
		prev := parent.Content[(u.Index-1)*step+step-1]
		if prevEnd, err = e.blockEnd(prev, e.offset(prev)); err != nil {
			return err
		}
	} else {
		prevEnd = e.collectionStart(parent)
	}
	at := len(e.src)
	if l := e.lineOf(prevEnd) + u.Gap; l < len(e.lines) && prevEnd < len(e.src) {
		at = e.lines[l]
	}
	return e.insertLines(at, u.Text)
}

// restore replaces the node at u.Path with u.Text (undo op "replace").
func (e *editor) restore(u undo) error {
	node, _, err := e.find(parsePointer(u.Path))
	if err != nil {
		return err
	}
	if node == nil {
		return fmt.Errorf("%s: no such node", u.Path)
	}
	if u.Range == rangeOwn {
		end, own, err := e.ownEnd(node)
		if err != nil || !own {
			return fmt.Errorf("%s: %w", u.Path, errUnsupported)
		}
		return e.splice(e.offset(node), end, u.Text)
	}
	from, err := e.start(node)
	if err != nil {
		return err
	}
	end, err := e.blockEnd(node, from)
	if err != nil {
		return err
	}
	return e.splice(e.lines[e.lineOf(from)], end, u.Text)
}

// delete removes the node at u.Path, which an injection added (undo op "remove").
func (e *editor) delete(u undo) error {
	tokens := parsePointer(u.Path)
	node, _, err := e.find(tokens)
	if err != nil {
		return err
	}
	if node == nil {
		return fmt.Errorf("%s: no such node", u.Path)
	}
	if got := elementNames(node); !slices.Equal(got, u.Names) {
		return fmt.Errorf("%s: holds %q, but the injection added %q there", u.Path, got, u.Names)
	}
	p, ok := e.parents[node]
	if !ok {
		return fmt.Errorf("%s: the document root", u.Path)
	}
	if p.node.Style&kyaml.FlowStyle != 0 {
		from, err := e.start(node)
		if err != nil {
			return err
		}
		if p.node.Kind == kyaml.MappingNode {
			from = e.offset(p.node.Content[p.index-1])
		}
		end, own, err := e.ownEnd(node)
		if err != nil || !own {
			return fmt.Errorf("%s: %w", u.Path, errUnsupported)
		}
		last := p.index == len(p.node.Content)-1
		sole := len(p.node.Content) == 1 || p.node.Kind == kyaml.MappingNode && len(p.node.Content) == 2
		switch {
		case last && !sole:
			// Added last: ", value" before it.
			i := bytes.LastIndexByte(e.src[:from], ',')
			if i < 0 {
				return fmt.Errorf("%s: %w", u.Path, errUnsupported)
			}
			from = i
		case !last:
			// Added before another: "value, " after it.
			i := bytes.IndexByte(e.src[end:], ',')
			if i < 0 {
				return fmt.Errorf("%s: %w", u.Path, errUnsupported)
			}
			end += i + 1
			for end < len(e.src) && e.src[end] == ' ' {
				end++
			}
		}
		return e.splice(from, end, "")
	}
	from, err := e.start(node)
	if err != nil {
		return err
	}
	end, err := e.blockEnd(node, from)
	if err != nil {
		return err
	}
	return e.deleteLines(e.lines[e.lineOf(from)], end)
}
