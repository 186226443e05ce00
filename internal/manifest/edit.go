package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
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
	// json is true for a document written in JSON: what is added is written in JSON, and the
	// uninject record, a comment, has no place in it.
	json bool
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
	e.json = e.root.Kind == kyaml.MappingNode && e.root.Style&kyaml.FlowStyle != 0 &&
		len(e.root.Content) > 0 && e.root.Content[0].Style&kyaml.DoubleQuotedStyle != 0
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
		if n.Anchor != "" { // an alias elsewhere would change with it
			return nil, i, fmt.Errorf("/%s: %w (it has a YAML anchor)", strings.Join(tokens[:i], "/"), errUnsupported)
		}
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
