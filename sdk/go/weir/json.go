package weir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// State values are JSON in the canonical form of sdk/ENCODING.md: compact,
// `<`, `>`, `&`, U+2028 and U+2029 unescaped, integers as plain digits,
// floats without a `+` in the exponent. encoding/json writes all of that but
// the last two, which canonical fixes; integers, the common case, skip
// encoding/json altogether.

// codec encodes and decodes the values of one state type. The integer types
// get their own functions, chosen once per state handle, so that the hot
// path neither boxes values into interfaces nor goes through reflection.
type codec[T any] struct {
	encode func(dst []byte, v T) ([]byte, error)
	decode func(b []byte) (T, error)
}

func newCodec[T any]() codec[T] {
	var c codec[T]
	switch any(*new(T)).(type) {
	case int64:
		c.encode = any(func(dst []byte, v int64) ([]byte, error) { return strconv.AppendInt(dst, v, 10), nil }).(func([]byte, T) ([]byte, error))
		c.decode = any(decodeInt64).(func([]byte) (T, error))
	case uint64:
		c.encode = any(func(dst []byte, v uint64) ([]byte, error) { return strconv.AppendUint(dst, v, 10), nil }).(func([]byte, T) ([]byte, error))
		c.decode = any(decodeUint64).(func([]byte) (T, error))
	default:
		c.encode = appendJSON[T]
		c.decode = decodeJSON[T]
	}
	return c
}

func decodeInt64(b []byte) (int64, error) {
	if plainInteger(b) {
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			return n, nil
		}
	}
	return decodeJSON[int64](b)
}

func decodeUint64(b []byte) (uint64, error) {
	if plainInteger(b) {
		if n, err := strconv.ParseUint(string(b), 10, 64); err == nil {
			return n, nil
		}
	}
	return decodeJSON[uint64](b)
}

// appendJSON appends the canonical JSON text of v to dst.
func appendJSON[T any](dst []byte, v T) ([]byte, error) {
	switch x := any(v).(type) {
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	text := bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
	return append(dst, canonical(text)...), nil
}

// canonical rewrites what encoding/json writes differently from the
// canonical form: `\u2028` and `\u2029` in strings become raw UTF-8, and an
// exponent loses its `+` (`1e+21` -> `1e21`).
func canonical(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u202`)) && !bytes.Contains(b, []byte("e+")) {
		return b
	}
	out := make([]byte, 0, len(b))
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			if i+5 < len(b) && string(b[i+1:i+5]) == "u202" && (b[i+5] == '8' || b[i+5] == '9') {
				out = append(out, 0xE2, 0x80, 0xA8+(b[i+5]-'8'))
				i += 5
				continue
			}
			out = append(out, c, b[i+1])
			i++
			continue
		case c == '"':
			inString = !inString
		case !inString && c == 'e' && i+1 < len(b) && b[i+1] == '+':
			out = append(out, 'e')
			i++
			continue
		}
		out = append(out, c)
	}
	return out
}

// decodeJSON reads the JSON text b (any valid JSON, not only the canonical
// form) as a T. Numbers decoded into an interface keep their exact text
// (json.Number), so 64-bit integers are never rounded.
func decodeJSON[T any](b []byte) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return v, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return v, fmt.Errorf("invalid character after the JSON value")
	}
	return v, nil
}

// plainInteger reports whether b is `-`? followed by ASCII digits only (what
// strconv accepts and JSON does too: no `+`).
func plainInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
