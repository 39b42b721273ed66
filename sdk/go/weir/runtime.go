package weir

import (
	"fmt"
	"path"
	"runtime"
	"runtime/metrics"
	"strings"
)

// The operator's side of the exported WIT interface, in the SDK's own
// types: glue_wasip1.go turns the generated bindings' calls into these.

// Operator is the operator logic: one value per subtask, made by Spec.Open.
// Only declared state survives a restart: the value's fields are rebuilt by Open.
//
// An operator may also implement [TimerHandler], [Prefetcher] and
// [TimerPrefetcher].
type Operator interface {
	// Process handles one event. Return BadInput to send the event to the
	// dead-letter output (the job goes on), Fatal or any other error to
	// fail the job. Validate an event before writing state for it: writes
	// made before a bad-input error are kept.
	Process(ctx *Context, event Event, out *Output) error
}

// TimerHandler is an Operator that handles timers registered with
// Context.RegisterTimer when they fire. An error from OnTimer is fatal.
type TimerHandler interface {
	OnTimer(ctx *Context, timer Timer, out *Output) error
}

// Prefetcher is an Operator that sees every event of a batch before Process
// does, to batch state reads the SDK cannot guess (see MapState.Prefetch).
type Prefetcher interface {
	Prefetch(ctx *Context, events []Event) error
}

// TimerPrefetcher is a TimerHandler that sees every timer that fires
// together before OnTimer does, to batch state reads.
type TimerPrefetcher interface {
	PrefetchTimers(ctx *Context, timers []Timer) error
}

// Spec describes an operator to Export.
type Spec struct {
	// Name is the name of the logic, e.g. "keyed-count".
	Name string
	// Version is the version of the logic, e.g. "1.0.0".
	Version string
	// States are the declared states: name, kind and schema version of each.
	States []StateSpec
	// Open creates the operator for one subtask: it reads the config and
	// opens state handles. An error stops the job with its text.
	Open func(ctx *Context) (Operator, error)
	// Migrate, if set, converts one stored value of state from schema
	// version fromVersion to the version declared in States. It is called
	// when a checkpoint or savepoint of an older version is restored (before
	// Open, for every value of a value state, every value of a map state,
	// every element of a list state); an error stops the restore, naming the
	// key. Unset, every migration is refused.
	Migrate func(state string, fromVersion uint32, value []byte) ([]byte, error)
}

// Export makes spec the operator of this component. Call it once, from an
// init function of package main.
func Export(spec Spec) {
	if exported.spec.Open != nil {
		panic("weir.Export called twice")
	}
	if spec.Open == nil {
		panic("weir.Export: Spec.Open is nil")
	}
	exported.spec = spec
}

type instance struct {
	spec Spec
	op   Operator
	ctx  *Context
	out  Output
	// Reused between calls.
	events []Event
	timers []Timer
}

var exported instance

// current is the call being handled: its keys in order (for ValueState's
// prefetch) and the position of the event or timer being handled.
var current struct {
	keys [][]byte
	has  []bool
	at   int
}

func init() { current.at = -1 }

// outcome says how a call ended.
type outcome uint8

const (
	succeeded outcome = iota
	// rejected: bad input at the event `index`, with `message`.
	rejected
	// failed: a fatal error, with `message`.
	failed
)

// result is how a call ended; its output is in exported.out.
type result struct {
	outcome outcome
	index   uint32
	message string
}

func fatalResult(message string) result { return result{outcome: failed, message: message} }

// open creates the operator of a subtask: task, config (name -> value).
func (in *instance) open(task TaskInfo, config map[string]string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = recovered(p)
		}
	}()
	if in.spec.Open == nil {
		return Fatal("no operator: call weir.Export from an init function of package main")
	}
	ctx := &Context{task: task, config: Config{entries: config}, declared: in.spec.States}
	op, err := in.spec.Open(ctx)
	if err == nil {
		err = ctx.flush()
	}
	if err != nil {
		return err
	}
	in.op, in.ctx = op, ctx
	return nil
}

// splitBatch turns a flat batch into events (their bytes stay in the batch).
func splitBatch(b batch, events []Event) ([]Event, string) {
	n := len(b.timestamps)
	if len(b.keyLens) != n || len(b.valueLens) != n {
		return nil, "malformed batch: the length lists differ"
	}
	const malformed = "malformed batch: lengths exceed the data"
	at, data := 0, b.data
	for i := 0; i < n; i++ {
		e := Event{Timestamp: b.timestamps[i]}
		switch kl := b.keyLens[i]; {
		case kl >= 0:
			end := at + int(kl)
			if end > len(data) {
				return nil, malformed
			}
			e.Key, e.HasKey, at = data[at:end:end], true, end
		case kl != -1:
			return nil, malformed
		}
		end := at + int(b.valueLens[i])
		if end > len(data) || end < at {
			return nil, malformed
		}
		e.Value, at = data[at:end:end], end
		events = append(events, e)
	}
	return events, ""
}

func setCurrent(n int, key func(int) ([]byte, bool)) {
	current.keys = current.keys[:0]
	current.has = current.has[:0]
	for i := 0; i < n; i++ {
		k, ok := key(i)
		current.keys = append(current.keys, k)
		current.has = append(current.has, ok)
	}
	current.at = -1
}

func clearCurrent() {
	clear(current.keys)
	current.keys = current.keys[:0]
	current.has = current.has[:0]
	current.at = -1
}

// recovered turns a panic of the operator into a fatal error.
// recovered is the fatal error of a recovered panic, with where it was
// raised: the innermost three functions of the operator's own code (not
// the Go runtime's or this SDK's), as in
// `panic: … (in main.explode (main.go:45) <- main.(*op).Process (main.go:18))`.
// It must be called from the deferred function that recovered, while the
// panicking frames are still on the stack.
func recovered(p any) error {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	var where []string
	for len(where) < 3 {
		f, more := frames.Next()
		// Skipped: the Go runtime, this SDK and the component's export glue.
		if f.Function != "" && f.File != "<autogenerated>" &&
			!strings.HasPrefix(f.Function, "runtime.") &&
			!strings.HasPrefix(f.Function, "weir.dev/sdk/") {
			where = append(where, fmt.Sprintf("%s (%s:%d)", f.Function, path.Base(f.File), f.Line))
		}
		if !more {
			break
		}
	}
	if len(where) == 0 {
		return Fatalf("panic: %v", p)
	}
	return Fatalf("panic: %v (in %s)", p, strings.Join(where, " <- "))
}

// process handles a flat batch; what it emits is left in in.out.
func (in *instance) process(input batch) result {
	if in.op == nil {
		return fatalResult("the operator was called before `open`")
	}
	events, problem := splitBatch(input, in.events[:0])
	if problem != "" {
		return fatalResult(problem)
	}
	in.events = events
	setCurrent(len(events), func(i int) ([]byte, bool) { return events[i].Key, events[i].HasKey })
	ctx := in.ctx
	ctx.beginCall()
	in.out.reset()
	badAt, err := processEvents(in, ctx, events)
	// State written before a bad input is kept, so flush in every case.
	flushed := ctx.flush()
	clearCurrent()
	clear(in.events)
	if err != nil {
		if message, bad := badMessage(err); bad && badAt >= 0 {
			return result{outcome: rejected, index: uint32(badAt), message: message}
		}
		return fatalResult(fatalMessage(err))
	}
	if flushed != nil {
		return fatalResult(fatalMessage(flushed))
	}
	return result{}
}

// processEvents runs the operator over events; on an error it returns the
// index of the event that failed (-1: the prefetch).
func processEvents(in *instance, ctx *Context, events []Event) (at int, err error) {
	at = -1
	defer func() {
		if p := recover(); p != nil {
			at, err = -1, recovered(p)
		}
	}()
	if p, ok := in.op.(Prefetcher); ok {
		if err := p.Prefetch(ctx, events); err != nil {
			return -1, Fatal(err.Error())
		}
	}
	for i := range events {
		current.at = i
		if err := in.op.Process(ctx, events[i], &in.out); err != nil {
			return i, err
		}
	}
	return -1, nil
}

// onTimer handles fired timers; what it emits is left in in.out.
func (in *instance) onTimer(domain TimeDomain, keys blobs, timestamps []int64) result {
	if in.op == nil {
		return fatalResult("the operator was called before `open`")
	}
	timers := in.timers[:0]
	if err := splitBlobs(keys, func(i int, key []byte, ok bool) error {
		timers = append(timers, Timer{Key: key, HasKey: ok, Domain: domain})
		return nil
	}); err != nil {
		return fatalResult(fatalMessage(err))
	}
	if len(timers) != len(timestamps) {
		return fatalResult("malformed timers: the length lists differ")
	}
	for i := range timers {
		timers[i].Timestamp = timestamps[i]
	}
	in.timers = timers
	setCurrent(len(timers), func(i int) ([]byte, bool) { return timers[i].Key, timers[i].HasKey })
	ctx := in.ctx
	ctx.beginCall()
	in.out.reset()
	err := handleTimers(in, ctx, timers)
	flushed := ctx.flush()
	clearCurrent()
	clear(in.timers)
	if err != nil {
		if message, bad := badMessage(err); bad {
			return fatalResult("on_timer rejected a timer: " + message)
		}
		return fatalResult(fatalMessage(err))
	}
	if flushed != nil {
		return fatalResult(fatalMessage(flushed))
	}
	return result{}
}

func handleTimers(in *instance, ctx *Context, timers []Timer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = recovered(p)
		}
	}()
	h, ok := in.op.(TimerHandler)
	if !ok {
		return nil
	}
	if p, ok := in.op.(TimerPrefetcher); ok {
		if err := p.PrefetchTimers(ctx, timers); err != nil {
			return err
		}
	}
	for i := range timers {
		current.at = i
		if err := h.OnTimer(ctx, timers[i], &in.out); err != nil {
			return err
		}
	}
	return nil
}

// refusal is why migrate refused a value: its index, and a message.
type refusal struct {
	index   int
	message string
}

// migrate converts stored values of state from schema version fromVersion.
func (in *instance) migrate(state string, fromVersion uint32, values blobs) (out blobs, refused *refusal) {
	index := 0
	defer func() {
		if p := recover(); p != nil {
			refused = &refusal{index, fmt.Sprintf("panic: %v", p)}
		}
	}()
	spec := in.spec
	at := 0
	for i, n := range values.lens {
		index = i
		if n < 0 {
			out.pushAbsent()
			continue
		}
		end := at + int(n)
		if end > len(values.data) {
			return out, &refusal{0, errMalformedBlobs.Error()}
		}
		value := values.data[at:end:end]
		at = end
		if spec.Migrate == nil {
			return out, &refusal{i, fmt.Sprintf("%s %s has no migration for state `%s` from version %d",
				spec.Name, spec.Version, state, fromVersion)}
		}
		converted, err := spec.Migrate(state, fromVersion, value)
		if err != nil {
			return out, &refusal{i, err.Error()}
		}
		out.push(converted)
	}
	return out, nil
}

// Garbage collection: the automatic collector is off (see "Memory" in the
// package docs), so collect when the heap has grown by gcMinGrowth or by as
// much as was live after the last collection, whichever is more (GOGC=100).
const gcMinGrowth = 4 << 20

var gc = struct {
	samples  []metrics.Sample
	lastHeap uint64
	live     uint64
}{samples: []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}}

func collectGarbage() {
	metrics.Read(gc.samples[:1])
	allocated := gc.samples[0].Value.Uint64()
	if allocated-gc.lastHeap < max(gcMinGrowth, gc.live) {
		return
	}
	runtime.GC()
	metrics.Read(gc.samples)
	gc.lastHeap = gc.samples[0].Value.Uint64()
	gc.live = gc.samples[1].Value.Uint64()
}
