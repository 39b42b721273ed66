// Package weir lets you write weir stream operators in Go.
//
// An operator is a value implementing [Operator], created per subtask by the
// Open function of the [Spec] given to [Export] from an init function. It
// declares its state up front (Spec.States), opens typed handles to it in
// Open, and then sees one [Event] at a time in Process, emitting events into
// an [Output]:
//
//	package main
//
//	import "weir.dev/sdk/weir"
//
//	// keyedCount counts events per key and emits the running count.
//	type keyedCount struct {
//		count *weir.ValueState[uint64]
//	}
//
//	func (k *keyedCount) Process(ctx *weir.Context, e weir.Event, out *weir.Output) error {
//		key, err := e.RequireKey()
//		if err != nil {
//			return err
//		}
//		n, _, err := k.count.Get(key)
//		if err != nil {
//			return err
//		}
//		n++
//		k.count.Set(key, n)
//		out.EmitUint(key, n, e.Timestamp)
//		return nil
//	}
//
//	func init() {
//		weir.Export(weir.Spec{
//			Name:    "keyed-count",
//			Version: "1.0.0",
//			States:  []weir.StateSpec{weir.ValueSpec("count", 1)},
//			Open: func(ctx *weir.Context) (weir.Operator, error) {
//				count, err := weir.OpenValueState[uint64](ctx, "count")
//				return &keyedCount{count: count}, err
//			},
//		})
//	}
//
//	func main() {} // required by Go, never called
//
// # Errors
//
// Return [BadInput] from Process to send the event to the dead-letter output
// (the job goes on), [Fatal] (or any other error) to fail the job, which
// restarts from its last checkpoint. A panic is a fatal error too.
//
// # State, and what crosses the component boundary
//
// State lives in the host, not in the operator's memory: it is checkpointed
// and survives restarts and logic swaps. The handles cache it for the length
// of one call: the first [ValueState.Get] in a batch fetches the values of
// every key of the batch in one call to the host, writes are buffered, and
// all buffered writes and timer registrations go to the host in one call per
// state when the batch ends (also when an event is rejected as bad input:
// writes made for the events before it are kept). [MapState] reads that the
// SDK cannot guess can be batched with [MapState.Prefetch] from a
// [Prefetcher]'s Prefetch.
//
// # How typed state is stored
//
// Values, and the user keys of a [MapState], are stored as canonical compact
// JSON (sdk/ENCODING.md), written with encoding/json, so that an operator
// written in any language reads state written by another: 42, "text",
// {"a":1}, [1,2]. Integers are exact over the whole int64 and uint64 ranges;
// numbers decoded into an interface (any) are json.Number. The key a state
// is kept under is the raw bytes the operator passes, normally the event key.
//
// # Memory
//
// Go's garbage collector must not run while the host is writing arguments
// into the operator's memory (wasmtime issue #14318), so the SDK turns the
// automatic collector off and collects between events itself, inside
// Process and OnTimer, when enough has been allocated since the last time.
package weir
