package weir

import "fmt"

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
func Log(level Level, message string) { imports.log(level, message) }

// Logf is Log with a fmt.Sprintf message.
func Logf(level Level, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }
