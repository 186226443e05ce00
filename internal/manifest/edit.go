package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"
)

// errUnsupported marks a document whose layout the editor cannot change in place (anchors
// and aliases on the way, several entries on one line, ...). The message says where.
var errUnsupported = errors.New("cannot be edited in place")

// editor changes one YAML document in its own text: each operation replaces, inserts or
// deletes the text of one node, found in kyaml's node tree (which knows every node's line
// and column), and leaves every other byte as it was: comments, blank lines, indentation,
// quoting and key order of everything the operation does not touch. After each change the
// document is parsed again, so that the next operation sees the positions as they are.
//
// Ranges: a node in a block mapping is edited as its whole entry (from the start of the key's
// line to the end of the last line of its value that holds more than a comment), a node in a
// block sequence as its whole element (from its dash's line), a single-line scalar as its own
// text, and a node in a flow collection as its own text, with the comma that separates it.
type editor struct {
	src   []byte
	root  *kyaml.Node
	lines []int // offset of the start of each line
	// parent and position of each node in its parent's Content.
	parents map[*kyaml.Node]parentRef
	// bodyLines are lines inside literal or folded block scalars: content even when they
	// start with '#'.
	bodyLines map[int]bool
	wide      bool // block sequences are indented under their key
	crlf      bool // lines end with CRLF
}

type parentRef struct {
	node  *kyaml.Node
	index int
}

func newEditor(src []byte) (*editor, error) {
	e := &editor{}
	return e, e.reset(src)
}

// reset parses src, the whole document.
func (e *editor) reset(src []byte) error {
	var doc kyaml.Node
	if err := kyaml.Unmarshal(src, &doc); err != nil {
		return fmt.Errorf("parsing YAML: %w", err)
	}
	if doc.Kind != kyaml.DocumentNode || len(doc.Content) != 1 {
		return fmt.Errorf("parsing YAML: not one document")
	}
	e.src, e.root = src, doc.Content[0]
	e.lines = append(e.lines[:0], 0)
	for i, c := range src {
		if c == '\n' {
			e.lines = append(e.lines, i+1)
		}
	}
	e.parents = map[*kyaml.Node]parentRef{}
	e.bodyLines = map[int]bool{}
	e.wide = false
	e.crlf = bytes.Contains(src, []byte("\r\n"))
	var walk func(n *kyaml.Node)
	walk = func(n *kyaml.Node) {
		for i, c := range n.Content {
			e.parents[c] = parentRef{n, i}
			walk(c)
		}
		switch {
		case n.Kind == kyaml.ScalarNode && n.Style&(kyaml.LiteralStyle|kyaml.FoldedStyle) != 0:
			e.markBody(n)
		case n.Kind == kyaml.MappingNode && n.Style&kyaml.FlowStyle == 0:
			for i := 0; i+1 < len(n.Content); i += 2 {
				v := n.Content[i+1]
				if v.Kind == kyaml.SequenceNode && v.Style&kyaml.FlowStyle == 0 && len(v.Content) > 0 && v.Content[0].Column > n.Content[i].Column+2 {
					e.wide = true
				}
			}
		}
	}
	walk(e.root)
	return nil
}

// markBody records the lines of a block scalar's body: after its indicator's line, the lines
// indented at least as its first non-blank line, and blank lines among them.
func (e *editor) markBody(n *kyaml.Node) {
	indent := -1
	for l := n.Line; l < len(e.lines); l++ { // n.Line is 1-based: l is the next line, 0-based
		text := e.line(l)
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		ind := indentOf(text)
		if indent < 0 {
			indent = ind
			if p, ok := e.parents[n]; ok && ind < p.node.Column { // no body at all
				return
			}
		}
		if ind < indent {
			return
		}
		e.bodyLines[l] = true
	}
}

// line returns line l (0-based) without its newline.
func (e *editor) line(l int) []byte {
	start, end := e.lines[l], len(e.src)
	if l+1 < len(e.lines) {
		end = e.lines[l+1] - 1
	}
	return e.src[start:end]
}

func indentOf(line []byte) int { return len(line) - len(bytes.TrimLeft(line, " ")) }

// content reports whether line l holds more than blanks and comments.
func (e *editor) content(l int) bool {
	if e.bodyLines[l] {
		return true
	}
	t := bytes.TrimSpace(e.line(l))
	return len(t) > 0 && t[0] != '#' && string(t) != "..."
}

// offset converts a node's 1-based line and column (in characters) to a byte offset.
func (e *editor) offset(n *kyaml.Node) int {
	l := n.Line - 1
	if l < 0 || l >= len(e.lines) {
		return len(e.src)
	}
	o := e.lines[l]
	for range n.Column - 1 {
		if o >= len(e.src) || e.src[o] == '\n' {
			break
		}
		_, size := utf8.DecodeRune(e.src[o:])
		o += size
	}
	return o
}

// lineOf returns the 0-based line that holds offset o.
func (e *editor) lineOf(o int) int {
	lo, hi := 0, len(e.lines)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if e.lines[mid] <= o {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// lineEnd returns the offset just after line l's newline (or the end of the text).
func (e *editor) lineEnd(l int) int {
	if l+1 < len(e.lines) {
		return e.lines[l+1]
	}
	return len(e.src)
}

// startsLine reports whether only spaces precede offset o on its line.
func (e *editor) startsLine(o int) bool {
	return len(bytes.TrimLeft(e.src[e.lines[e.lineOf(o)]:o], " ")) == 0
}

// dash returns the offset of the "-" that introduces element n of a block sequence.
func (e *editor) dash(n *kyaml.Node) (int, error) {
	o := e.offset(n)
	for o > 0 {
		o--
		switch e.src[o] {
		case ' ', '\n', '\r':
			continue
		case '-':
			return o, nil
		}
		break
	}
	return 0, fmt.Errorf("sequence element at line %d: %w (no dash before it)", n.Line, errUnsupported)
}

// start returns where the text of node n starts, as its block entry or element or itself.
func (e *editor) start(n *kyaml.Node) (int, error) {
	p, ok := e.parents[n]
	switch {
	case !ok:
		return e.offset(n), nil
	case p.node.Kind == kyaml.MappingNode && p.node.Style&kyaml.FlowStyle == 0:
		return e.offset(p.node.Content[p.index-p.index%2]), nil // the entry's key
	case p.node.Kind == kyaml.SequenceNode && p.node.Style&kyaml.FlowStyle == 0:
		return e.dash(n)
	}
	return e.offset(n), nil
}

// next returns the offset of the first token after node n's subtree at n's level or above:
// the next key or element of n's parent or, failing that, of an ancestor; or the end.
func (e *editor) next(n *kyaml.Node) (int, error) {
	for {
		p, ok := e.parents[n]
		if !ok {
			return len(e.src), nil
		}
		if p.node.Kind == kyaml.MappingNode && p.index%2 == 0 {
			n = p.node.Content[p.index+1] // a key: what follows is its value's
			continue
		}
		if p.index+1 < len(p.node.Content) {
			return e.start(p.node.Content[p.index+1])
		}
		if p.node.Style&kyaml.FlowStyle != 0 {
			return e.flowEnd(e.offset(p.node))
		}
		n = p.node
	}
}

// blockEnd returns the end of the block text of node n that starts at offset from: just after
// the last line, before the next token, that holds more than a comment.
func (e *editor) blockEnd(n *kyaml.Node, from int) (int, error) {
	next, err := e.next(n)
	if err != nil {
		return 0, err
	}
	first, last := e.lineOf(from), e.lineOf(next)
	if next == len(e.src) {
		last = len(e.lines) // up to the end, whether or not a newline ends the text
	} else if !e.startsLine(next) {
		return 0, fmt.Errorf("line %d: %w (the next entry is on the same line)", n.Line, errUnsupported)
	}
	for l := last - 1; l >= first; l-- {
		if e.content(l) {
			return e.lineEnd(l), nil
		}
	}
	return e.lineEnd(first), nil
}

// flowEnd returns the offset just after the flow collection that opens at offset o.
func (e *editor) flowEnd(o int) (int, error) {
	depth := 0
	for i := o; i < len(e.src); i++ {
		switch c := e.src[i]; c {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return i + 1, nil
			}
		case '"', '\'':
			end, err := e.quoteEnd(i)
			if err != nil {
				return 0, err
			}
			i = end - 1
		case '#':
			if i > 0 && (e.src[i-1] == ' ' || e.src[i-1] == '\t' || e.src[i-1] == '\n') {
				for i < len(e.src) && e.src[i] != '\n' {
					i++
				}
			}
		}
	}
	return 0, fmt.Errorf("flow collection at offset %d: %w (unterminated)", o, errUnsupported)
}

// quoteEnd returns the offset just after the quoted scalar that opens at offset o.
func (e *editor) quoteEnd(o int) (int, error) {
	q := e.src[o]
	for i := o + 1; i < len(e.src); i++ {
		switch {
		case q == '"' && e.src[i] == '\\':
			i++
		case e.src[i] == q && q == '\'' && i+1 < len(e.src) && e.src[i+1] == '\'':
			i++
		case e.src[i] == q:
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("quoted scalar at offset %d: %w (unterminated)", o, errUnsupported)
}

// ownEnd returns the end of node n's own text (not its entry's): for scalars that fit on their
// line and for flow collections.
func (e *editor) ownEnd(n *kyaml.Node) (int, bool, error) {
	o := e.offset(n)
	switch {
	case n.Kind == kyaml.MappingNode || n.Kind == kyaml.SequenceNode:
		if n.Style&kyaml.FlowStyle == 0 {
			return 0, false, nil
		}
		end, err := e.flowEnd(o)
		return end, err == nil, err
	case n.Kind != kyaml.ScalarNode || n.Style&(kyaml.LiteralStyle|kyaml.FoldedStyle) != 0 || n.Tag == "!!null" && n.Value == "":
		return 0, false, nil
	case n.Style&(kyaml.DoubleQuotedStyle|kyaml.SingleQuotedStyle) != 0:
		end, err := e.quoteEnd(o)
		if err != nil || e.lineOf(end-1) != e.lineOf(o) {
			return 0, false, err
		}
		return end, true, nil
	}
	// A plain scalar: up to a comment, the end of its line or, in flow, an indicator.
	_, inFlow := e.inFlow(n)
	end := o
	for end < len(e.src) && e.src[end] != '\n' {
		c := e.src[end]
		if c == '#' && end > o && e.src[end-1] == ' ' || inFlow && (c == ',' || c == ']' || c == '}') {
			break
		}
		end++
	}
	for end > o && (e.src[end-1] == ' ' || e.src[end-1] == '\r') {
		end--
	}
	// A plain scalar continued on the next lines is not handled here.
	if !inFlow {
		if nx, err := e.next(n); err == nil && e.lineOf(nx) > e.lineOf(o)+1 {
			for l := e.lineOf(o) + 1; l < e.lineOf(nx); l++ {
				if e.content(l) {
					return 0, false, nil
				}
			}
		}
	}
	return end, true, nil
}

// inFlow reports whether n's parent is a flow collection.
func (e *editor) inFlow(n *kyaml.Node) (parentRef, bool) {
	p, ok := e.parents[n]
	return p, ok && p.node.Style&kyaml.FlowStyle != 0
}

// splice replaces src[from:to] with text and parses the result.
func (e *editor) splice(from, to int, text string) error {
	var b bytes.Buffer
	b.Grow(len(e.src) - (to - from) + len(text))
	b.Write(e.src[:from])
	b.WriteString(text)
	b.Write(e.src[to:])
	return e.reset(b.Bytes())
}

// find walks the document along a JSON pointer's tokens. It returns the node, or nil and the
// number of tokens it could follow.
func (e *editor) find(tokens []string) (*kyaml.Node, int, error) {
	n := e.root
	for i, tok := range tokens {
		switch n.Kind {
		case kyaml.MappingNode:
			var next *kyaml.Node
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == tok {
					next = n.Content[j+1]
					break
				}
			}
			if next == nil {
				return nil, i, nil
			}
			n = next
		case kyaml.SequenceNode:
			k, err := strconv.Atoi(tok)
			if err != nil || k < 0 || k >= len(n.Content) {
				return nil, i, nil
			}
			n = n.Content[k]
		case kyaml.AliasNode:
			return nil, i, fmt.Errorf("/%s: %w (it uses a YAML alias)", strings.Join(tokens[:i], "/"), errUnsupported)
		default:
			return nil, i, nil
		}
	}
	if n.Kind == kyaml.AliasNode || n.Anchor != "" {
		return nil, len(tokens), fmt.Errorf("/%s: %w (it uses a YAML anchor or alias)", strings.Join(tokens, "/"), errUnsupported)
	}
	return n, len(tokens), nil
}

// parsePointer splits a JSON pointer (RFC 6901) into its tokens.
func parsePointer(p string) []string {
	if p == "" {
		return nil
	}
	tokens := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens
}

// pointer joins tokens into a JSON pointer.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// The range kinds that an undo operation names, so that it restores exactly the text that the
// operation replaced: a block entry or element, or a node's own text.
const (
	rangeBlock = "block"
	rangeOwn   = "own"
)

// undo is one operation of the record that reverses an injection (see record.go).
type undo struct {
	// Op is "remove" (delete the node at Path, which the injection added), "replace" (put
	// Text back in place of the node at Path) or "insert" (put Text back as the Index-th
	// entry or element of the collection at Path, after Gap lines of comments).
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
		end, err := e.flowEnd(e.offset(m))
		if err != nil {
			return u, err
		}
		text := keyText + ": " + flow(value)
		if len(m.Content) > 0 {
			text = ", " + text
		}
		return u, e.splice(end-1, end-1, text)
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
		text := flow(value)
		if k < len(s.Content) {
			at, err := e.start(s.Content[k])
			if err != nil {
				return u, err
			}
			return u, e.splice(at, at, text+", ")
		}
		end, err := e.flowEnd(e.offset(s))
		if err != nil {
			return u, err
		}
		if len(s.Content) > 0 {
			text = ", " + text
		}
		return u, e.splice(end-1, end-1, text)
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
		if scalar {
			text, err = renderInline(value)
		} else {
			text = flow(value)
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
		u.Gap = from // flow: the exact offset from the collection's start
		u.Gap -= e.offset(p.node)
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
	prevEnd := e.lines[0]
	step := 1
	if p.node.Kind == kyaml.MappingNode {
		step = 2
	}
	if before := p.index - step; before >= 0 { // the previous element, or entry's value
		if prevEnd, err = e.blockEnd(p.node.Content[before], e.offset(p.node.Content[before])); err != nil {
			return u, err
		}
	} else {
		if prevEnd, err = e.collectionStart(p.node); err != nil {
			return u, err
		}
	}
	u.Gap = e.lineOf(lineFrom) - e.lineOf(prevEnd)
	u.Range, u.Text = rangeBlock, string(e.src[lineFrom:end])
	return u, e.deleteLines(lineFrom, end)
}

// collectionStart returns the start of the line after the one that opens block collection c
// (the line of its key), from which its first entry's comments count.
func (e *editor) collectionStart(c *kyaml.Node) (int, error) {
	p, ok := e.parents[c]
	if !ok {
		return e.lines[0], nil
	}
	if p.node.Kind == kyaml.MappingNode {
		return e.lineEnd(p.node.Content[p.index-1].Line - 1), nil
	}
	return e.lineEnd(c.Line - 1), nil
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
	} else if prevEnd, err = e.collectionStart(parent); err != nil {
		return err
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
// (which is YAML too) when that would not fit on one line.
func flow(value json.RawMessage) string {
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
