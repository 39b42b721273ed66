package weir

// The shared test vectors of sdk/vectors/ (sdk/PROTOCOL.md is the contract
// they check, sdk/vectors/README.md their format), run against this package
// on the host: canonical JSON through the state codec, flat batches and
// fired timers through the operator's side of the exports (runtime.go),
// whole calls (state caches, flush order, timers, the reject protocol)
// with a scripted operator and a stand-in host in place of the imports
// (host.go), and migrate. sdk/test.sh runs `go test ./weir` with the Go toolchain weir
// builds operators with.
//
// This SDK keeps no state from call to call, so a key a `get-many` names as
// `known` is fetched again, as the contract requires of such an SDK. Its
// floats are written in encoding/json's layout, which differs from the
// reference one: the cases marked `float` check that what it writes reads
// back as the same number.

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

type object = map[string]any

// cases reads sdk/vectors/name, numbers as json.Number (exact).
func cases(t *testing.T, name string) []object {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []object
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 1<<20), 1<<24)
	for lines.Scan() {
		if strings.TrimSpace(lines.Text()) == "" {
			continue
		}
		var c object
		d := json.NewDecoder(strings.NewReader(lines.Text()))
		d.UseNumber()
		if err := d.Decode(&c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, c)
	}
	return out
}

// runAll runs check on every case of file and fails with every case that failed.
func runAll(t *testing.T, file string, check func(c object) string) {
	var failed []string
	for _, c := range cases(t, file) {
		if problem := check(c); problem != "" {
			failed = append(failed, fmt.Sprintf("%s: `%s`: %s", file, c["name"], problem))
		}
	}
	if len(failed) > 0 {
		t.Fatal("\n" + strings.Join(failed, "\n"))
	}
}

// canon is a comparable text of a decoded value (map fields sorted).
func canon(v any) string {
	b, err := appendJSON[any](nil, v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// ---------------------------------------------------------------- json.jsonl

// ordered is a JSON value that keeps its objects' field order, written
// through the SDK's writer (appendJSON) part by part.
type ordered struct{ v any } // nil, bool, int64, uint64, float64, string, []ordered, []field

type field struct {
	name  string
	value ordered
}

func readOrdered(d *json.Decoder) (ordered, error) {
	tok, err := d.Token()
	if err != nil {
		return ordered{}, err
	}
	switch x := tok.(type) {
	case json.Delim:
		if x == '[' {
			var items []ordered
			for d.More() {
				item, err := readOrdered(d)
				if err != nil {
					return ordered{}, err
				}
				items = append(items, item)
			}
			_, err := d.Token()
			return ordered{items}, err
		}
		fields := []field{}
		for d.More() {
			name, err := d.Token()
			if err != nil {
				return ordered{}, err
			}
			value, err := readOrdered(d)
			if err != nil {
				return ordered{}, err
			}
			fields = append(fields, field{name.(string), value})
		}
		_, err := d.Token()
		return ordered{fields}, err
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return ordered{n}, nil
		}
		if n, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return ordered{n}, nil
		}
		f, err := x.Float64()
		return ordered{f}, err
	}
	return ordered{tok}, nil
}

func (o ordered) MarshalJSON() ([]byte, error) {
	switch x := o.v.(type) {
	case []ordered:
		out := []byte{'['}
		for i, item := range x {
			if i > 0 {
				out = append(out, ',')
			}
			b, err := appendJSON(nil, item)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		return append(out, ']'), nil
	case []field:
		out := []byte{'{'}
		for i, f := range x {
			if i > 0 {
				out = append(out, ',')
			}
			name, err := appendJSON(nil, f.name)
			if err != nil {
				return nil, err
			}
			value, err := appendJSON(nil, f.value)
			if err != nil {
				return nil, err
			}
			out = append(append(append(out, name...), ':'), value...)
		}
		return append(out, '}'), nil
	case int64:
		return appendJSON(nil, x)
	case uint64:
		return appendJSON(nil, x)
	case float64:
		return appendJSON(nil, x)
	case string:
		return appendJSON(nil, x)
	case bool:
		return appendJSON(nil, x)
	}
	return []byte("null"), nil
}

func (o *ordered) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	v, err := readOrdered(d)
	*o = v
	return err
}

func TestJSONVectors(t *testing.T) {
	runAll(t, "json.jsonl", func(c object) string {
		if text, ok := c["invalid"].(string); ok {
			if v, err := decodeJSON[any]([]byte(text)); err == nil {
				return fmt.Sprintf("%q was read as %v", text, v)
			}
			return ""
		}
		want := c["json"].(string)
		input, ok := c["input"].(string)
		if !ok {
			input = want
		}
		for _, text := range []string{input, want} {
			if c["float"] == true {
				x, err := decodeJSON[float64]([]byte(text))
				if err != nil {
					return fmt.Sprintf("%q was refused: %v", text, err)
				}
				written, err := appendJSON(nil, x)
				if err != nil {
					return err.Error()
				}
				y, err := decodeJSON[float64](written)
				if err != nil || y != x {
					return fmt.Sprintf("%q was written as %q, which does not read back", text, written)
				}
				if z, _ := decodeJSON[float64]([]byte(want)); z != x {
					return fmt.Sprintf("%q was read as %v, expected %s", text, x, want)
				}
				continue
			}
			v, err := decodeJSON[ordered]([]byte(text))
			if err != nil {
				return fmt.Sprintf("%q was refused: %v", text, err)
			}
			written, err := appendJSON(nil, v)
			if err != nil {
				return err.Error()
			}
			if string(written) != want {
				return fmt.Sprintf("%q was written as %q, expected %q", text, written, want)
			}
		}
		return ""
	})
}

// ---------------------------------------------------------------- the stand-in host

type call = object

type fakeHost struct {
	values    map[string][]byte // state \x00 key
	maps      map[string][]byte // state \x00 key \x00 user key
	lists     map[string][][]byte
	watermark int64
	calls     []call
}

func split(b blobs) [][]byte {
	var out [][]byte
	at := 0
	for _, n := range b.lens {
		if n < 0 {
			out = append(out, nil)
			continue
		}
		out = append(out, append([]byte{}, b.data[at:at+int(n)]...)) // empty, not nil: nil is absent
		at += int(n)
	}
	return out
}

func join(parts [][]byte) blobs {
	var b blobs
	for _, p := range parts {
		if p == nil {
			b.pushAbsent()
		} else {
			b.push(p)
		}
	}
	return b
}

func text(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func texts(parts [][]byte) []any {
	out := []any{}
	for _, p := range parts {
		out = append(out, text(p))
	}
	return out
}

func slot(parts ...[]byte) string { return string(bytes.Join(parts, []byte{0})) }

func (h *fakeHost) record(c call) { h.calls = append(h.calls, c) }

func (h *fakeHost) openValueState(name string) (valueHandle, error) {
	return fakeValue{h, name}, nil
}

func (h *fakeHost) openMapState(name string) (mapHandle, error) { return fakeMap{h, name}, nil }

func (h *fakeHost) openListState(name string) (listHandle, error) { return fakeList{h, name}, nil }

func (h *fakeHost) timers(kind string, domain TimeDomain, keys blobs, timestamps []int64) {
	entries := []any{}
	for i, k := range split(keys) {
		entries = append(entries, []any{text(k), timestamps[i]})
	}
	h.record(call{"call": "timers." + kind, "domain": domain.String(), "entries": entries})
}

func (h *fakeHost) registerTimers(domain TimeDomain, keys blobs, timestamps []int64) {
	h.timers("register-many", domain, keys, timestamps)
}

func (h *fakeHost) deleteTimers(domain TimeDomain, keys blobs, timestamps []int64) {
	h.timers("delete-many", domain, keys, timestamps)
}

func (h *fakeHost) currentWatermark() int64 {
	h.record(call{"call": "timers.current-watermark"})
	return h.watermark
}

func (h *fakeHost) processingTime() int64 {
	h.record(call{"call": "timers.processing-time"})
	return 0
}

func (h *fakeHost) log(Level, string) {}

type fakeValue struct {
	h    *fakeHost
	name string
}

func (s fakeValue) getMany(keys blobs) blobs {
	ks := split(keys)
	s.h.record(call{"call": "value.get-many", "state": s.name, "keys": texts(ks)})
	var found [][]byte
	for _, k := range ks {
		found = append(found, s.h.values[slot([]byte(s.name), k)])
	}
	return join(found)
}

func (s fakeValue) putMany(keys, values blobs) {
	ks, vs := split(keys), split(values)
	entries := []any{}
	for i, k := range ks {
		entries = append(entries, []any{text(k), text(vs[i])})
		if vs[i] == nil {
			delete(s.h.values, slot([]byte(s.name), k))
		} else {
			s.h.values[slot([]byte(s.name), k)] = bytes.Clone(vs[i])
		}
	}
	s.h.record(call{"call": "value.put-many", "state": s.name, "entries": entries})
}

type fakeMap struct {
	h    *fakeHost
	name string
}

func (s fakeMap) getMany(keys, mapKeys blobs) blobs {
	ks, ms := split(keys), split(mapKeys)
	pairs := []any{}
	var found [][]byte
	for i, k := range ks {
		pairs = append(pairs, []any{text(k), text(ms[i])})
		found = append(found, s.h.maps[slot([]byte(s.name), k, ms[i])])
	}
	s.h.record(call{"call": "map.get-many", "state": s.name, "pairs": pairs})
	return join(found)
}

func (s fakeMap) putMany(keys, mapKeys, values blobs) {
	ks, ms, vs := split(keys), split(mapKeys), split(values)
	entries := []any{}
	for i, k := range ks {
		entries = append(entries, []any{text(k), text(ms[i]), text(vs[i])})
		if vs[i] == nil {
			delete(s.h.maps, slot([]byte(s.name), k, ms[i]))
		} else {
			s.h.maps[slot([]byte(s.name), k, ms[i])] = bytes.Clone(vs[i])
		}
	}
	s.h.record(call{"call": "map.put-many", "state": s.name, "entries": entries})
}

func (s fakeMap) entries(key []byte) (blobs, blobs) {
	s.h.record(call{"call": "map.entries", "state": s.name, "key": string(key)})
	prefix := slot([]byte(s.name), key) + "\x00"
	var mks []string
	for k := range s.h.maps {
		if strings.HasPrefix(k, prefix) {
			mks = append(mks, k[len(prefix):])
		}
	}
	sort.Strings(mks)
	var ms, vs [][]byte
	for _, m := range mks {
		ms = append(ms, []byte(m))
		vs = append(vs, s.h.maps[prefix+m])
	}
	return join(ms), join(vs)
}

func (s fakeMap) clear(key []byte) {
	s.h.record(call{"call": "map.clear", "state": s.name, "key": string(key)})
	prefix := slot([]byte(s.name), key) + "\x00"
	for k := range s.h.maps {
		if strings.HasPrefix(k, prefix) {
			delete(s.h.maps, k)
		}
	}
}

type fakeList struct {
	h    *fakeHost
	name string
}

func (s fakeList) get(key []byte) blobs {
	s.h.record(call{"call": "list.get", "state": s.name, "key": string(key)})
	return join(s.h.lists[slot([]byte(s.name), key)])
}

func (s fakeList) addMany(keys, values blobs) {
	ks, vs := split(keys), split(values)
	entries := []any{}
	for i, k := range ks {
		entries = append(entries, []any{text(k), text(vs[i])})
		at := slot([]byte(s.name), k)
		s.h.lists[at] = append(s.h.lists[at], bytes.Clone(vs[i]))
	}
	s.h.record(call{"call": "list.add-many", "state": s.name, "entries": entries})
}

func (s fakeList) update(key []byte, values blobs) {
	vs := split(values)
	s.h.record(call{"call": "list.update", "state": s.name, "key": string(key), "values": texts(vs)})
	at := slot([]byte(s.name), key)
	if len(vs) == 0 {
		delete(s.h.lists, at)
		return
	}
	s.h.lists[at] = nil
	for _, v := range vs {
		s.h.lists[at] = append(s.h.lists[at], bytes.Clone(v))
	}
}

// ---------------------------------------------------------------- the scripted operator

// plan is what the scripted operator does in the current call.
var plan struct {
	states     []any
	prefetch   []any
	items      [][]any
	at         int
	mismatches []string
	recording  bool
	seen       []any
}

type handleKey struct {
	state  string
	number int
}

type script struct{ handles map[handleKey]any }

func openScript(ctx *Context) (Operator, error) {
	s := &script{handles: map[handleKey]any{}}
	for _, st := range plan.states {
		st := st.(object)
		name := st["name"].(string)
		n := 1
		if c, ok := st["handles"].(json.Number); ok {
			k, _ := c.Int64()
			n = int(k)
		}
		for i := 0; i < n; i++ {
			var h any
			var err error
			switch st["kind"] {
			case "value":
				h, err = OpenValueState[any](ctx, name)
			case "map":
				h, err = OpenMapState[any, any](ctx, name)
			default:
				h, err = OpenListState[any](ctx, name)
			}
			if err != nil {
				return nil, err
			}
			s.handles[handleKey{name, i}] = h
		}
	}
	return s, nil
}

func check(op object, got any) {
	if canon(got) != canon(op["expect"]) {
		plan.mismatches = append(plan.mismatches,
			fmt.Sprintf("%s: read %s, expected %s", canon(op), canon(got), canon(op["expect"])))
	}
}

func i64(v any) int64 {
	n, err := v.(json.Number).Int64()
	if err != nil {
		panic(err)
	}
	return n
}

func domainOf(v any) TimeDomain {
	if v == "processing-time" {
		return ProcessingTime
	}
	return EventTime
}

func (s *script) run(ctx *Context, ops []any, out *Output) error {
	for _, o := range ops {
		op := o.(object)
		name, _ := op["state"].(string)
		n := 0
		if h, ok := op["handle"].(json.Number); ok {
			k, _ := h.Int64()
			n = int(k)
		}
		h := s.handles[handleKey{name, n}]
		keyText, hasKey := op["key"].(string)
		key := []byte(keyText)
		switch op["op"] {
		case "get":
			v, ok, err := h.(*ValueState[any]).Get(key)
			if err != nil {
				return err
			}
			if !ok {
				v = nil
			}
			check(op, v)
		case "set":
			h.(*ValueState[any]).Set(key, op["value"])
		case "remove":
			h.(*ValueState[any]).Remove(key)
		case "map.get":
			v, ok, err := h.(*MapState[any, any]).Get(key, op["map_key"])
			if err != nil {
				return err
			}
			if !ok {
				v = nil
			}
			check(op, v)
		case "map.put":
			h.(*MapState[any, any]).Put(key, op["map_key"], op["value"])
		case "map.remove":
			h.(*MapState[any, any]).Remove(key, op["map_key"])
		case "map.prefetch":
			var keys [][]byte
			var mks []any
			for _, p := range op["pairs"].([]any) {
				pair := p.([]any)
				keys = append(keys, []byte(pair[0].(string)))
				mks = append(mks, pair[1])
			}
			if err := h.(*MapState[any, any]).Prefetch(keys, mks); err != nil {
				return err
			}
		case "map.entries":
			entries, err := h.(*MapState[any, any]).Entries(key)
			if err != nil {
				return err
			}
			got := []any{}
			for _, e := range entries {
				got = append(got, []any{e.Key, e.Value})
			}
			check(op, got)
		case "map.clear":
			if err := h.(*MapState[any, any]).Clear(key); err != nil {
				return err
			}
		case "list.add":
			if err := h.(*ListState[any]).Add(key, op["value"]); err != nil {
				return err
			}
		case "list.get":
			got, err := h.(*ListState[any]).Get(key)
			if err != nil {
				return err
			}
			if got == nil {
				got = []any{}
			}
			check(op, got)
		case "list.update":
			if err := h.(*ListState[any]).Update(key, op["values"].([]any)); err != nil {
				return err
			}
		case "list.clear":
			if err := h.(*ListState[any]).Clear(key); err != nil {
				return err
			}
		case "emit":
			if hasKey {
				out.EmitString(key, op["value"].(string), i64(op["timestamp"]))
			} else {
				out.EmitUnkeyed([]byte(op["value"].(string)), i64(op["timestamp"]))
			}
		case "timer.register":
			ctx.RegisterTimer(domainOf(op["domain"]), key, i64(op["timestamp"]))
		case "timer.delete":
			ctx.DeleteTimer(domainOf(op["domain"]), key, i64(op["timestamp"]))
		case "watermark":
			check(op, json.Number(strconv.FormatInt(ctx.Watermark(), 10)))
		case "reject":
			return BadInput(op["message"].(string))
		case "fail":
			return Fatal(op["message"].(string))
		default:
			panic(fmt.Sprintf("unknown op %v", op["op"]))
		}
	}
	return nil
}

// nextItem notes an event or timer in record mode, else gives its ops.
func nextItem(key []byte, hasKey bool, value []byte, timestamp int64, isTimer bool) ([]any, bool) {
	if plan.recording {
		var k any
		if hasKey {
			k = hex.EncodeToString(key)
		}
		seen := object{"key": k, "timestamp": json.Number(strconv.FormatInt(timestamp, 10))}
		if !isTimer {
			seen["value"] = hex.EncodeToString(value)
		}
		plan.seen = append(plan.seen, seen)
		return nil, false
	}
	var ops []any
	if plan.at < len(plan.items) {
		ops = plan.items[plan.at]
	}
	plan.at++
	return ops, true
}

func (s *script) Process(ctx *Context, e Event, out *Output) error {
	if ops, ok := nextItem(e.Key, e.HasKey, e.Value, e.Timestamp, false); ok {
		return s.run(ctx, ops, out)
	}
	return nil
}

func (s *script) Prefetch(ctx *Context, _ []Event) error { return s.run(ctx, plan.prefetch, nil) }

func (s *script) OnTimer(ctx *Context, t Timer, out *Output) error {
	if ops, ok := nextItem(t.Key, t.HasKey, nil, t.Timestamp, true); ok {
		return s.run(ctx, ops, out)
	}
	return nil
}

func (s *script) PrefetchTimers(ctx *Context, _ []Timer) error { return s.run(ctx, plan.prefetch, nil) }

// ---------------------------------------------------------------- driving the calls

func declared(states []any) []StateSpec {
	var out []StateSpec
	for _, s := range states {
		s := s.(object)
		name := s["name"].(string)
		switch s["kind"] {
		case "value":
			out = append(out, ValueSpec(name, 1))
		case "map":
			out = append(out, MapSpec(name, 1))
		default:
			out = append(out, ListSpec(name, 1))
		}
	}
	return out
}

// start makes a fresh instance of the scripted operator on host h.
func start(h *fakeHost, states []any) error {
	imports = h
	plan.states = states
	exported = instance{spec: Spec{Name: "vectors", Version: "1.0.0", States: declared(states), Open: openScript}}
	return exported.open(TaskInfo{OperatorID: "vectors", Parallelism: 1, MaxParallelism: 128}, map[string]string{})
}

func newHost() *fakeHost {
	return &fakeHost{values: map[string][]byte{}, maps: map[string][]byte{}, lists: map[string][][]byte{}, watermark: -1 << 63}
}

func unhex(v any) []byte {
	b, err := hex.DecodeString(v.(string))
	if err != nil {
		panic(err)
	}
	return b
}

func ints[T int32 | uint32 | int64](v any) []T {
	var out []T
	for _, n := range v.([]any) {
		x, err := strconv.ParseInt(string(n.(json.Number)), 10, 64)
		if err != nil {
			panic(err)
		}
		out = append(out, T(x))
	}
	return out
}

// eventsOf writes the output as the vectors do: [[key, value, timestamp], ...].
func eventsOf(o *Output) []any {
	out := []any{}
	at := 0
	for i, ts := range o.times {
		var key any
		if o.keyLens[i] >= 0 {
			key = string(o.data[at : at+int(o.keyLens[i])])
			at += int(o.keyLens[i])
		}
		value := string(o.data[at : at+int(o.valueLens[i])])
		at += int(o.valueLens[i])
		out = append(out, []any{key, value, ts})
	}
	return out
}

func resultOf(r result) object {
	switch r.outcome {
	case rejected:
		return object{"rejected": object{"index": r.index, "message": r.message, "output": eventsOf(&exported.out)}}
	case failed:
		return object{"fatal": r.message}
	}
	return object{"output": eventsOf(&exported.out)}
}

func TestBatchVectors(t *testing.T) {
	runAll(t, "batch.jsonl", func(c object) string {
		if err := start(newHost(), nil); err != nil {
			return err.Error()
		}
		plan.recording, plan.seen = true, []any{}
		defer func() { plan.recording = false }()
		var r result
		var want any
		if b, ok := c["batch"].(object); ok {
			r = exported.process(batch{unhex(b["data"]), ints[int32](b["key_lens"]), ints[uint32](b["value_lens"]), ints[int64](b["timestamps"])})
			want = c["events"]
		} else {
			t := c["timers"].(object)
			keys := t["keys"].(object)
			r = exported.onTimer(domainOf(t["domain"]), blobs{unhex(keys["data"]), ints[int32](keys["lens"])}, ints[int64](t["timestamps"]))
			want = c["fired"]
		}
		if e, ok := c["error"].(string); ok {
			if r.outcome != failed || r.message != e {
				return fmt.Sprintf("returned %s, expected the error %q", canon(resultOf(r)), e)
			}
			return ""
		}
		if r.outcome != succeeded {
			return "failed: " + canon(resultOf(r))
		}
		if canon(plan.seen) != canon(want) {
			return fmt.Sprintf("saw %s, expected %s", canon(plan.seen), canon(want))
		}
		return ""
	})
}

// normalized sorts a put-many's entries by key (and user key) bytes: their
// order is not part of the contract.
func normalized(c call) call {
	if !strings.HasSuffix(c["call"].(string), ".put-many") {
		return c
	}
	entries := append([]any(nil), c["entries"].([]any)...)
	field := func(e any, i int) string {
		s, _ := e.([]any)[i].(string)
		return s
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if a, b := field(entries[i], 0), field(entries[j], 0); a != b {
			return a < b
		}
		return field(entries[i], 1) < field(entries[j], 1)
	})
	out := call{}
	for k, v := range c {
		out[k] = v
	}
	out["entries"] = entries
	return out
}

func load(c object) *fakeHost {
	h := newHost()
	spec, _ := c["host"].(object)
	for state, entries := range asObject(spec["value"]) {
		for _, e := range entries.([]any) {
			e := e.([]any)
			h.values[slot([]byte(state), []byte(e[0].(string)))] = []byte(e[1].(string))
		}
	}
	for state, entries := range asObject(spec["map"]) {
		for _, e := range entries.([]any) {
			e := e.([]any)
			h.maps[slot([]byte(state), []byte(e[0].(string)), []byte(e[1].(string)))] = []byte(e[2].(string))
		}
	}
	for state, entries := range asObject(spec["list"]) {
		for _, e := range entries.([]any) {
			e := e.([]any)
			at := slot([]byte(state), []byte(e[0].(string)))
			for _, v := range e[1].([]any) {
				h.lists[at] = append(h.lists[at], []byte(v.(string)))
			}
		}
	}
	if w, ok := spec["watermark"]; ok {
		h.watermark = i64(w)
	}
	return h
}

func asObject(v any) object {
	o, _ := v.(object)
	return o
}

func runCase(c object) string {
	h := load(c)
	states, _ := c["states"].([]any)
	if err := start(h, states); err != nil {
		return "open refused: " + err.Error()
	}
	h.calls = nil
	for n, s := range c["steps"].([]any) {
		step := s.(object)
		plan.prefetch, _ = step["prefetch"].([]any)
		items, isProcess := step["process"].([]any)
		if !isProcess {
			items = step["on_timer"].(object)["timers"].([]any)
		}
		plan.items = nil
		for _, it := range items {
			ops, _ := it.(object)["ops"].([]any)
			plan.items = append(plan.items, ops)
		}
		plan.at, plan.mismatches = 0, nil
		var keys blobs
		var data []byte
		var kl []int32
		var vl []uint32
		var ts []int64
		for _, it := range items {
			it := it.(object)
			if k, ok := it["key"].(string); ok {
				keys.push([]byte(k))
				data = append(data, k...)
				kl = append(kl, int32(len(k)))
			} else {
				keys.pushAbsent()
				kl = append(kl, -1)
			}
			v, _ := it["value"].(string)
			data = append(data, v...)
			vl = append(vl, uint32(len(v)))
			ts = append(ts, i64(it["timestamp"]))
		}
		var r result
		if isProcess {
			r = exported.process(batch{data, kl, vl, ts})
		} else {
			r = exported.onTimer(domainOf(step["on_timer"].(object)["domain"]), keys, ts)
		}
		where := fmt.Sprintf("step %d: ", n+1)
		if len(plan.mismatches) > 0 {
			return where + strings.Join(plan.mismatches, "; ")
		}
		got := []any{}
		for _, c := range h.calls {
			got = append(got, normalized(c))
		}
		h.calls = nil
		want := []any{}
		for _, c := range step["calls"].([]any) {
			c := c.(object)
			delete(c, "known")
			want = append(want, c)
		}
		if canon(got) != canon(want) {
			return fmt.Sprintf("%sthe host saw\n    %s\n  expected\n    %s", where, canon(got), canon(want))
		}
		if canon(resultOf(r)) != canon(step["result"]) {
			return fmt.Sprintf("%sreturned %s, expected %s", where, canon(resultOf(r)), canon(step["result"]))
		}
	}
	return ""
}

func TestStateVectors(t *testing.T)  { runAll(t, "state.jsonl", runCase) }
func TestRejectVectors(t *testing.T) { runAll(t, "reject.jsonl", runCase) }
func TestTimersVectors(t *testing.T) { runAll(t, "timers.jsonl", runCase) }

// ---------------------------------------------------------------- migrate.jsonl

// scriptedMigrate is the vectors' migrate: [STATE,FROM,VALUE], refusing "refuse".
func scriptedMigrate(state string, fromVersion uint32, value []byte) ([]byte, error) {
	if string(value) == `"refuse"` {
		return nil, fmt.Errorf("refused at version %d", fromVersion)
	}
	name, _ := json.Marshal(state)
	return fmt.Appendf(nil, "[%s,%d,%s]", name, fromVersion, value), nil
}

func TestMigrateVectors(t *testing.T) {
	runAll(t, "migrate.jsonl", func(c object) string {
		spec := Spec{Name: "vectors", Version: "1.0.0", Open: openScript}
		if c["migrate"] != false {
			spec.Migrate = scriptedMigrate
		}
		in := instance{spec: spec}
		m := c["call"].(object)
		var values blobs
		if b, ok := m["blobs"].(object); ok {
			values = blobs{unhex(b["data"]), ints[int32](b["lens"])}
		} else {
			for _, v := range m["values"].([]any) {
				if s, ok := v.(string); ok {
					values.push([]byte(s))
				} else {
					values.pushAbsent()
				}
			}
		}
		out, refused := in.migrate(m["state"].(string), uint32(i64(m["from_version"])), values)
		var got object
		if refused != nil {
			got = object{"refused": object{"index": refused.index, "message": refused.message}}
		} else {
			got = object{"values": texts(split(out))}
		}
		if canon(got) != canon(c["result"]) {
			return fmt.Sprintf("returned %s, expected %s", canon(got), canon(c["result"]))
		}
		return ""
	})
}
