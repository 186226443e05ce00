package patch

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"gomodules.xyz/jsonpatch/v2"
)

// writer appends the operations of a JSON patch to a buffer as they are found, values encoded
// once, straight into it: no operation structs to marshal afterwards, and no re-scan of
// pre-encoded values (encoding/json validates and compacts every json.RawMessage it writes).
type writer struct {
	b   []byte
	n   int           // operations written
	enc *json.Encoder // writes to the writer itself
}

// Write appends p; it lets enc encode values into the buffer.
func (w *writer) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *writer) reset(dst []byte) {
	w.b, w.n = dst, 0
	if w.enc == nil {
		w.enc = json.NewEncoder(w)
		w.enc.SetEscapeHTML(false)
	}
}

// begin opens an operation and its path, which the caller extends with key and index, then
// ends with value, stringValue or noValue.
func (w *writer) begin(op, path string) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
	w.b = append(w.b, `{"op":"`...)
	w.b = append(w.b, op...)
	w.b = append(w.b, `","path":"`...)
	w.b = appendStringContent(w.b, path, false)
}

// key appends "/" and an object key, escaped as a JSON pointer token (RFC 6901).
func (w *writer) key(k string) {
	w.b = append(w.b, '/')
	w.b = appendStringContent(w.b, k, true)
}

// index appends "/" and an array index.
func (w *writer) index(i int) {
	w.b = append(w.b, '/')
	w.b = strconv.AppendInt(w.b, int64(i), 10)
}

func (w *writer) noValue() {
	w.b = append(w.b, `"}`...)
}

func (w *writer) stringValue(s string) {
	w.b = append(w.b, `","value":`...)
	w.b = AppendJSONString(w.b, s)
	w.b = append(w.b, '}')
}

// value ends the operation with v encoded as JSON.
func (w *writer) value(v any) error {
	w.b = append(w.b, `","value":`...)
	if err := w.enc.Encode(v); err != nil {
		return err
	}
	w.b = w.b[:len(w.b)-1] // the newline Encode ends with
	w.b = append(w.b, '}')
	return nil
}

// ops appends operations computed by the generic diff.
func (w *writer) ops(ops []jsonpatch.Operation) error {
	for _, op := range ops {
		w.begin(op.Operation, op.Path)
		if op.Operation == "remove" {
			w.noValue()
		} else if err := w.value(op.Value); err != nil {
			return err
		}
	}
	return nil
}

// AppendJSONString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json does).
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendStringContent(dst, s, false)
	return append(dst, '"')
}

const hex = "0123456789abcdef"

// appendStringContent appends s escaped for the inside of a JSON string; pointer also escapes
// "~" and "/" as a JSON pointer token.
func appendStringContent(dst []byte, s string, pointer bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && !(pointer && (c == '~' || c == '/')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '~':
				dst = append(dst, '~', '0')
			case '/':
				dst = append(dst, '~', '1')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
