package weir

import (
	"fmt"

	"weir.dev/sdk/internal/wit/imports/weir_operator_logging"
	"weir.dev/sdk/internal/wit/imports/weir_operator_types"
)

// Level is a log level.
type Level uint8

// The log levels, from the most verbose.
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

// Log writes message into the host's log at level, tagged with the operator
// ID and subtask. (The operator's stdout and stderr go to the host's log too.)
func Log(level Level, message string) {
	l := weir_operator_types.Level_Info
	switch level {
	case LevelTrace:
		l = weir_operator_types.Level_Trace
	case LevelDebug:
		l = weir_operator_types.Level_Debug
	case LevelWarn:
		l = weir_operator_types.Level_Warn
	case LevelError:
		l = weir_operator_types.Level_Error
	}
	weir_operator_logging.Log(l, message)
}

// Logf is Log with a fmt.Sprintf message.
func Logf(level Level, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }
