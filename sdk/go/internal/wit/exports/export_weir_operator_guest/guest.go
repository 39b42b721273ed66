// Package export_weir_operator_guest is where the bindings that
// `wit-bindgen go` generates (into internal/wit at build time) look for the
// implementation of the exported `weir:operator/guest` interface. It only
// forwards to Impl, which package weir sets when it is initialised: weir
// imports the generated exports, so they cannot import weir back.
package export_weir_operator_guest

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"weir.dev/sdk/internal/wit/imports/weir_operator_types"
)

// Guest is the exported interface, implemented by package weir.
type Guest interface {
	Describe() weir_operator_types.OperatorSpec
	Open(task weir_operator_types.TaskInfo, config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string]
	Process(input weir_operator_types.Batch) witTypes.Result[weir_operator_types.Batch, weir_operator_types.Error]
	OnTimer(fired weir_operator_types.Timers) witTypes.Result[weir_operator_types.Batch, weir_operator_types.Error]
	Migrate(state string, fromVersion uint32, values weir_operator_types.Blobs) witTypes.Result[weir_operator_types.Blobs, weir_operator_types.MigrateError]
}

// Impl is set by package weir's init.
var Impl Guest

func Describe() weir_operator_types.OperatorSpec { return Impl.Describe() }

func Open(task weir_operator_types.TaskInfo, config []witTypes.Tuple2[string, string]) witTypes.Result[witTypes.Unit, string] {
	return Impl.Open(task, config)
}

func Process(input weir_operator_types.Batch) witTypes.Result[weir_operator_types.Batch, weir_operator_types.Error] {
	return Impl.Process(input)
}

func OnTimer(fired weir_operator_types.Timers) witTypes.Result[weir_operator_types.Batch, weir_operator_types.Error] {
	return Impl.OnTimer(fired)
}

func Migrate(state string, fromVersion uint32, values weir_operator_types.Blobs) witTypes.Result[weir_operator_types.Blobs, weir_operator_types.MigrateError] {
	return Impl.Migrate(state, fromVersion, values)
}
