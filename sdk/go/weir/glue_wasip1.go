package weir

// The exported WIT interface (`guest`) through the bindings that
// `wit-bindgen go` generates into internal/wit at build time: the
// generated exports call guest.Impl, which is glue, which converts the
// generated types and calls the operator's side in runtime.go.

import (
	"runtime/debug"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	guest "weir.dev/sdk/internal/wit/exports/export_weir_operator_guest"
	_ "weir.dev/sdk/internal/wit/exports/wit_exports" // the component's exports
	"weir.dev/sdk/internal/wit/imports/weir_operator_types"
)

func init() {
	// See "Memory" in the package docs: the SDK collects garbage itself.
	debug.SetGCPercent(-1)
	guest.Impl = glue{}
}

// glue implements the exported WIT interface on top of the exported Spec.
type glue struct{}

type batchResult = witTypes.Result[weir_operator_types.Batch, weir_operator_types.Error]

func (glue) Describe() weir_operator_types.OperatorSpec {
	spec := exported.spec
	states := make([]weir_operator_types.StateSpec, len(spec.States))
	for i, s := range spec.States {
		kind := weir_operator_types.StateKind_Value
		switch s.Kind {
		case MapKind:
			kind = weir_operator_types.StateKind_Map
		case ListKind:
			kind = weir_operator_types.StateKind_List
		}
		states[i] = weir_operator_types.StateSpec{Name: s.Name, Kind: kind, Version: s.Version}
	}
	return weir_operator_types.OperatorSpec{Name: spec.Name, Version: spec.Version, States: states}
}

func (glue) Open(task weir_operator_types.TaskInfo, config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	entries := make(map[string]string, len(config))
	for _, kv := range config {
		entries[kv.F0] = kv.F1
	}
	info := TaskInfo{
		OperatorID:     task.OperatorId,
		Subtask:        task.Subtask,
		Parallelism:    task.Parallelism,
		MaxParallelism: task.MaxParallelism,
		Attempt:        task.Attempt,
	}
	if err := exported.open(info, entries); err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}

// witResult is how a call ended, with the output in exported.out.
func witResult(r result) batchResult {
	switch r.outcome {
	case rejected:
		return witTypes.Err[weir_operator_types.Batch](weir_operator_types.MakeErrorBadInput(
			weir_operator_types.Rejected{Index: r.index, Message: r.message, Output: exported.out.wit()}))
	case failed:
		return witTypes.Err[weir_operator_types.Batch](weir_operator_types.MakeErrorFatal(r.message))
	}
	return witTypes.Ok[weir_operator_types.Batch, weir_operator_types.Error](exported.out.wit())
}

func (o *Output) wit() weir_operator_types.Batch {
	return weir_operator_types.Batch{Data: o.data, KeyLens: o.keyLens, ValueLens: o.valueLens, Timestamps: o.times}
}

func (glue) Process(input weir_operator_types.Batch) batchResult {
	defer collectGarbage()
	return witResult(exported.process(batch{
		data: input.Data, keyLens: input.KeyLens, valueLens: input.ValueLens, timestamps: input.Timestamps,
	}))
}

func (glue) OnTimer(fired weir_operator_types.Timers) batchResult {
	defer collectGarbage()
	domain := EventTime
	if fired.Domain == weir_operator_types.TimeDomain_ProcessingTime {
		domain = ProcessingTime
	}
	return witResult(exported.onTimer(domain, fromWit(fired.Keys), fired.Timestamps))
}

func (glue) Migrate(state string, fromVersion uint32, values weir_operator_types.Blobs) witTypes.Result[weir_operator_types.Blobs, weir_operator_types.MigrateError] {
	out, refused := exported.migrate(state, fromVersion, fromWit(values))
	if refused != nil {
		return witTypes.Err[weir_operator_types.Blobs](weir_operator_types.MigrateError{
			Index: uint32(refused.index), Message: refused.message,
		})
	}
	return witTypes.Ok[weir_operator_types.Blobs, weir_operator_types.MigrateError](out.wit())
}
