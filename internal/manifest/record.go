package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// recordPrefix starts the comment line, just before an injected pod template's metadata, that
// holds the operations which take the injection back out (`inject --uninject`). A comment is
// the one place that neither the API server nor kubectl sees, so the record changes nothing
// that is applied, and it holds no version: only what the injection added and the text it
// replaced or removed, which is the same from one release to the next.
const recordPrefix = "# api-access-injector uninject: "

// metadataLine returns the line (0-based) of the template's metadata key, or -1.
func metadataLine(ed *editor, tokens []string) (int, error) {
	node, _, err := ed.find(append(slices.Clone(tokens), "metadata"))
	if err != nil || node == nil {
		return -1, err
	}
	p := ed.parents[node]
	return ed.lineOf(ed.offset(p.node.Content[p.index-1])), nil
}

// takeRecord removes the template's record line, if it has one, and returns its operations.
func takeRecord(ed *editor, tokens []string) ([]undo, error) {
	l, err := metadataLine(ed, tokens)
	if err != nil || l < 1 {
		return nil, err
	}
	line := bytes.TrimSpace(ed.line(l - 1))
	rest, ok := bytes.CutPrefix(line, []byte(strings.TrimSpace(recordPrefix)))
	if !ok {
		return nil, nil
	}
	var undos []undo
	if err := json.Unmarshal(bytes.TrimSpace(rest), &undos); err != nil {
		return nil, fmt.Errorf("line %d: the uninject record is not one this command wrote: %w", l, err)
	}
	if undos == nil {
		return nil, fmt.Errorf("line %d: the uninject record is empty", l)
	}
	return undos, ed.splice(ed.lines[l-1], ed.lines[l], "")
}

// putRecord writes the record line just before the template's metadata key, indented as it.
func putRecord(ed *editor, tokens []string, undos []undo) error {
	l, err := metadataLine(ed, tokens)
	if err != nil {
		return err
	}
	if l < 0 {
		return fmt.Errorf("the template has no metadata for the uninject record")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(undos); err != nil {
		return err
	}
	text := strings.Repeat(" ", indentOf(ed.line(l))) + recordPrefix + b.String() // Encode ends it with a newline
	return ed.splice(ed.lines[l], ed.lines[l], ed.nl(text))
}
