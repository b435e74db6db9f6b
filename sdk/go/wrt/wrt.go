// Package wrt writes wrt transforms in Go.
//
// A transform is a type with a Process method, made once from the configuration by the
// constructor handed to Register (from an init function of package main):
//
//	type passthrough struct{}
//
//	func (passthrough) Process(event wrt.ChangeEvent) ([]wrt.OutputRecord, error) {
//		row, ok := wrt.RowOf(event)
//		if !ok {
//			return nil, nil
//		}
//		return []wrt.OutputRecord{wrt.NewRecord(event.Source.Table, row)}, nil
//	}
//
//	func init() {
//		wrt.Register(func(wrt.Config) (wrt.Transform, error) { return passthrough{}, nil })
//	}
//
// Build with `sdk/go/build <project-dir> <out.wasm>`, which compiles the project with the
// bindings `wit-bindgen go` generates from sdk/wit; this package is imported as
// "wit_component/wrt".
//
// What a transform may rely on: the same events give the same output, so a replay rewrites
// the same bytes. time.Now() reads 1970: time comes from the events (event.CommitTime,
// Now()). The monotonic clock is virtual: it moves 1µs per reading and jumps to a timer's
// deadline when goroutines wait, so time.Sleep and timers work at once and durations count
// the scheduler's clock readings, not real time. crypto/rand is seeded by the component's
// digest and the batch's first source position (never use it for secrets); math/rand and
// map iteration order continue one stream from call to call, so sort map keys and seed a
// rand.Rand from the event when they reach the output. `wrt deploy --events` refuses a
// transform whose output depends on earlier calls.
package wrt

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/wrt_transform_clock"
	"wit_component/wrt_transform_config"
	"wit_component/wrt_transform_logging"
	"wit_component/wrt_transform_primitives"
	types "wit_component/wrt_transform_types"
)

// The data model of sdk/wit/transform.wit.
type (
	ChangeEvent  = types.ChangeEvent
	Column       = types.Column
	Row          = types.Row
	Value        = types.Value
	Timestamp    = types.Timestamp
	Operation    = types.Operation
	OutputRecord = types.OutputRecord
	Outcome      = types.Outcome
)

// Operations.
const (
	Create   = types.OperationCreate
	Update   = types.OperationUpdate
	Delete   = types.OperationDelete
	Read     = types.OperationRead
	Truncate = types.OperationTruncate
)

// Value tags, as Value.Tag() returns them.
const (
	TagNull      = types.ValueNull
	TagText      = types.ValueText
	TagTimestamp = types.ValueTimestamp
)

// Value constructors.
var (
	Null = types.MakeValueNull
	Text = types.MakeValueText
	Int  = types.MakeValueInt
)

// Log levels.
const (
	LevelTrace = wrt_transform_logging.LevelTrace
	LevelDebug = wrt_transform_logging.LevelDebug
	LevelInfo  = wrt_transform_logging.LevelInfo
	LevelWarn  = wrt_transform_logging.LevelWarn
	LevelError = wrt_transform_logging.LevelError
)

// Transform turns one change event into zero or more records, or rejects it with an
// error (an *Error keeps its code; the host dead-letters the event).
type Transform interface {
	Process(event ChangeEvent) ([]OutputRecord, error)
}

// Error is why a transform rejected one event: a short machine-readable code and a message.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Config is the transform's configuration, as set by the host.
type Config struct{}

// Get returns the value of key and whether it is set.
func (Config) Get(key string) (string, bool) {
	value := wrt_transform_config.Get(key)
	return value.SomeOr(""), value.IsSome()
}

// GetOr returns the value of key, or fallback when unset.
func (c Config) GetOr(key, fallback string) string {
	if value, ok := c.Get(key); ok {
		return value
	}
	return fallback
}

// List returns a comma-separated value with items trimmed and empty ones dropped.
func (c Config) List(key string) ([]string, bool) {
	raw, ok := c.Get(key)
	if !ok {
		return nil, false
	}
	items := []string{}
	for _, item := range strings.Split(raw, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items, true
}

// Log writes a line to the host's log.
func Log(level uint8, message string) { wrt_transform_logging.Log(level, message) }

// Now is the newest commit time in the current batch.
func Now() Timestamp { return wrt_transform_clock.Now() }

// OpCode is Debezium's one-letter code of an operation: c, u, d, r or t.
func OpCode(op Operation) string { return [...]string{"c", "u", "d", "r", "t"}[op] }

// RowOf is the row as it stands after the change, or as it was for a delete.
func RowOf(event ChangeEvent) (Row, bool) {
	row := event.After
	if event.Op == Delete {
		row = event.Before
	}
	return row.SomeOr(nil), row.IsSome()
}

// Set sets column name, appending it when the row does not have it.
func Set(row Row, name string, value Value) Row {
	for i := range row {
		if row[i].Name == name {
			row[i].Value = value
			return row
		}
	}
	return append(row, Column{Name: name, Value: value})
}

// NewRecord is a record for destination with no extra partition values.
func NewRecord(destination string, row Row) OutputRecord {
	return OutputRecord{Destination: destination, Row: row, Partition: []witTypes.Tuple2[string, string]{}}
}

// TypeName is the WIT case name of a value's type ("text", "int", ...), for messages.
func TypeName(value Value) string {
	return [...]string{"null", "boolean", "int", "float", "decimal", "text", "bytes", "json",
		"date", "time", "timestamp"}[value.Tag()]
}

// The host's primitives: native code shared by every language's SDK, so hashes, case
// mapping and timestamps agree byte for byte (Go's strings.ToLower has no final-sigma rule).

// Sha256 is the SHA-256 of data.
func Sha256(data []byte) []byte { return wrt_transform_primitives.Sha256(data) }

// HmacSha256 is the HMAC-SHA-256 of data under key.
func HmacSha256(key, data []byte) []byte { return wrt_transform_primitives.HmacSha256(key, data) }

// HmacSha256Config is the HMAC-SHA-256 of data keyed by the configuration entry configKey,
// so the transform's code need not handle a secret salt; false when the entry is not set.
func HmacSha256Config(configKey string, data []byte) ([]byte, bool) {
	mac := wrt_transform_primitives.HmacSha256Config(configKey, data)
	return mac.SomeOr(nil), mac.IsSome()
}

// Lower is the Unicode lower case, full and language-neutral: what Rust's to_lowercase gives.
func Lower(text string) string { return wrt_transform_primitives.Lower(text) }

// Trim removes leading and trailing Unicode White_Space.
func Trim(text string) string { return wrt_transform_primitives.Trim(text) }

// RFC3339 renders ts in UTC with a Z and 0, 3, 6 or 9 fraction digits as needed, years
// before 1970 included: the host's own rendering.
func RFC3339(ts Timestamp) string { return wrt_transform_primitives.Rfc3339(ts) }

var (
	newTransform func(Config) (Transform, error)
	transform    Transform
)

// Register sets the constructor the component's init calls with the configuration.
func Register(constructor func(Config) (Transform, error)) { newTransform = constructor }

// Init makes the registered transform; called by the component's `init` export.
//
// It also turns the Go collector's automatic runs off: a collection reads the clock (a WASI
// import), and one that starts while the host is allocating a batch's events in guest
// memory (cabi_realloc) traps with "cannot leave component instance". Process collects at
// the end of each batch instead. Still so with Go 1.26.8 and wit-bindgen-go 0.61.1, whose
// cabi_realloc pauses the adapter's clock: with the collector on, the PII example trapped
// so once in the bundled stream's 12,804 records (tried 2026-11-29).
func Init() error {
	debug.SetGCPercent(-1)
	if newTransform == nil {
		return errors.New("no transform registered: call wrt.Register from an init function")
	}
	var err error
	transform, err = newTransform(Config{})
	return err
}

// Process runs the transform over a batch; called by the component's `process` export.
func Process(events []ChangeEvent) []Outcome {
	outcomes := make([]Outcome, len(events))
	for i, event := range events {
		records, err := transform.Process(event)
		var rejected *Error
		switch {
		case err == nil:
			outcomes[i] = witTypes.Ok[[]OutputRecord, types.TransformError](records)
		case errors.As(err, &rejected):
			outcomes[i] = witTypes.Err[[]OutputRecord](types.TransformError{Code: rejected.Code, Message: rejected.Message})
		default:
			outcomes[i] = witTypes.Err[[]OutputRecord](types.TransformError{Code: "error", Message: err.Error()})
		}
	}
	runtime.GC()
	return outcomes
}
