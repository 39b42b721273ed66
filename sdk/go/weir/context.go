package weir

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TaskInfo says where a subtask runs.
type TaskInfo struct {
	// OperatorID is the operator ID in the job (`id = "..."`).
	OperatorID string
	// Subtask is the index of this subtask, from 0.
	Subtask uint32
	// Parallelism is the number of subtasks of the operator.
	Parallelism uint32
	// MaxParallelism is the number of key groups of the job.
	MaxParallelism uint32
	// Attempt counts the restarts after a failure in this run (0 at first).
	Attempt uint32
}

// Config is the operator's `config` table from the job file: text values by name.
type Config struct {
	entries map[string]string
}

// Lookup returns the value of name and whether it is set.
func (c Config) Lookup(name string) (string, bool) {
	v, ok := c.entries[name]
	return v, ok
}

// Get returns the value of name, or "" if it is not set.
func (c Config) Get(name string) string { return c.entries[name] }

// Names returns the names of every entry, sorted.
func (c Config) Names() []string {
	names := make([]string, 0, len(c.entries))
	for n := range c.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Require returns the value of name, or the error "config `name` is required".
func (c Config) Require(name string) (string, error) {
	v, ok := c.entries[name]
	if !ok {
		return "", fmt.Errorf("config `%s` is required", name)
	}
	return v, nil
}

// RequireInt returns the value of name as an integer (surrounding white
// space ignored), or an error if it is unset or not an integer.
func (c Config) RequireInt(name string) (int64, error) {
	text, err := c.Require(name)
	if err != nil {
		return 0, err
	}
	return c.parseInt(name, text)
}

// IntOr returns the value of name as an integer, def if it is unset, or an
// error if it is not an integer.
func (c Config) IntOr(name string, def int64) (int64, error) {
	text, ok := c.entries[name]
	if !ok {
		return def, nil
	}
	return c.parseInt(name, text)
}

// BoolOr returns the value of name as a boolean (`true` or `false`), def if
// it is unset, or an error if it is neither.
func (c Config) BoolOr(name string, def bool) (bool, error) {
	text, ok := c.entries[name]
	if !ok {
		return def, nil
	}
	switch strings.TrimFunc(text, unicode.IsSpace) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, c.invalid(name, text, "provided string was not `true` or `false`")
}

func (c Config) parseInt(name, text string) (int64, error) {
	n, problem := parseInt64(strings.TrimFunc(text, unicode.IsSpace))
	if problem != "" {
		return 0, c.invalid(name, text, problem)
	}
	return n, nil
}

// invalid is the error for an entry that does not parse; it words it as the
// Rust SDK does, so that every language reports the same.
func (c Config) invalid(name, text, problem string) error {
	return fmt.Errorf("config `%s` = %s is not valid: %s", name, rustQuote(text), problem)
}

// parseInt64 parses s exactly as Rust's `i64::from_str` does (an optional
// `+` or `-`, then ASCII digits) and on failure returns its error text.
func parseInt64(s string) (int64, string) {
	if s == "" {
		return 0, "cannot parse integer from empty string"
	}
	negative := false
	digits := s
	switch s[0] {
	case '+', '-':
		if len(s) == 1 {
			return 0, "invalid digit found in string"
		}
		negative = s[0] == '-'
		digits = s[1:]
	}
	var n int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, "invalid digit found in string"
		}
		d := int64(c - '0')
		if negative {
			if n < (-1<<63+d)/10 {
				return 0, "number too small to fit in target type"
			}
			n = n*10 - d
		} else {
			if n > (1<<63-1-d)/10 {
				return 0, "number too large to fit in target type"
			}
			n = n*10 + d
		}
	}
	return n, ""
}

// rustQuote writes s as Rust's `{:?}` does: in double quotes, with `\t`,
// `\r`, `\n`, `\\`, `\"`, `\0` and other control characters (`\u{1b}`) escaped.
func rustQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == 0:
			b.WriteString(`\0`)
		case r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u{%x}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

type timerOp struct {
	domain    TimeDomain
	register  bool
	hasKey    bool
	key       []byte
	timestamp int64
}

// Context is the operator's handle on its subtask, passed to every call:
// task info, config, state declarations, timers and the watermark.
type Context struct {
	task     TaskInfo
	config   Config
	declared []StateSpec
	flushers []flusher
	// The handles opened, by state name: opening a state again gives the
	// same handle, so that each sees the other's writes (one cache).
	opened    map[string]any
	timerOps  []timerOp
	timerKeys []byte
	watermark int64
	haveWM    bool
}

// Task says where this subtask runs.
func (c *Context) Task() TaskInfo { return c.task }

// Config is the operator's config from the job file.
func (c *Context) Config() Config { return c.config }

// RegisterTimer registers a timer for key at timestamp (ms) in domain; the
// operator's OnTimer is called when it fires. Registering the same (key,
// time) again keeps one timer. Registrations go to the host when the call ends.
// Timers are kept per key (in its key group), so there is no timer without a
// key: key is the event's key (a nil key registers a timer for the empty key).
func (c *Context) RegisterTimer(domain TimeDomain, key []byte, timestamp int64) {
	c.timerOp(domain, true, true, key, timestamp)
}

// DeleteTimer deletes the timer for key at timestamp in domain, if there is one.
func (c *Context) DeleteTimer(domain TimeDomain, key []byte, timestamp int64) {
	c.timerOp(domain, false, true, key, timestamp)
}

func (c *Context) timerOp(domain TimeDomain, register, hasKey bool, key []byte, timestamp int64) {
	// The key's bytes are copied (into one buffer, reused from call to call).
	start := len(c.timerKeys)
	c.timerKeys = append(c.timerKeys, key...)
	c.timerOps = append(c.timerOps, timerOp{
		domain: domain, register: register, hasKey: hasKey,
		key: c.timerKeys[start:len(c.timerKeys):len(c.timerKeys)], timestamp: timestamp,
	})
}

// Watermark returns the current event-time watermark (ms); math.MinInt64
// before the first one. Events at or behind it are late. It is read from
// the host once per call.
func (c *Context) Watermark() int64 {
	if !c.haveWM {
		c.watermark = imports.currentWatermark()
		c.haveWM = true
	}
	return c.watermark
}

// ProcessingTime returns the wall clock, ms since the Unix epoch, as
// processing-time timers see it.
func (c *Context) ProcessingTime() int64 { return imports.processingTime() }

// reopened is the handle already open on state name, if there is one:
// found is false if there is none, and err is set if it is not an H.
func reopened[H any](c *Context, name string, kind StateKind) (h H, found bool, err error) {
	open, ok := c.opened[name]
	if !ok {
		return h, false, nil
	}
	if h, ok := open.(H); ok {
		return h, true, nil
	}
	return h, true, fmt.Errorf("%s state `%s` is already open with another value type", strings.ToLower(kind.String()), name)
}

// remember notes the handle opened on state name, and flushes it at the end of every call.
func (c *Context) remember(name string, handle flusher) {
	if c.opened == nil {
		c.opened = map[string]any{}
	}
	c.opened[name] = handle
	c.flushers = append(c.flushers, handle)
}

func (c *Context) checkDeclared(name string, kind StateKind) error {
	for _, s := range c.declared {
		if s.Name == name {
			if s.Kind != kind {
				return fmt.Errorf("state `%s` is declared as %s state, not %s", name, s.Kind, kind)
			}
			return nil
		}
	}
	return fmt.Errorf("state `%s` is not declared in `Spec.States`", name)
}

func (c *Context) beginCall() { c.haveWM = false }

// flush sends every buffered state write and timer change to the host.
func (c *Context) flush() error {
	var first error
	for _, f := range c.flushers {
		if err := f.flush(); err != nil && first == nil {
			first = err
		}
	}
	c.flushTimers()
	return first
}

func (c *Context) flushTimers() {
	ops := c.timerOps
	for len(ops) > 0 {
		domain, register := ops[0].domain, ops[0].register
		n := 1
		for n < len(ops) && ops[n].domain == domain && ops[n].register == register {
			n++
		}
		var keys blobs
		times := make([]int64, 0, n)
		for _, op := range ops[:n] {
			if op.hasKey {
				keys.push(op.key)
			} else {
				keys.pushAbsent()
			}
			times = append(times, op.timestamp)
		}
		if register {
			imports.registerTimers(domain, keys, times)
		} else {
			imports.deleteTimers(domain, keys, times)
		}
		ops = ops[n:]
	}
	c.timerOps = c.timerOps[:0]
	c.timerKeys = c.timerKeys[:0]
}
