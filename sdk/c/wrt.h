// Write wrt transforms in C.
//
// A transform defines two functions, and this layer exports them as the component's
// `transform` interface (the bindings come from `wit-bindgen c` over sdk/wit at build time):
//
//     const char *wrt_init(void);                           // NULL, or why it cannot start
//     void wrt_process(wrt_event_t *event, wrt_outcome_t *out);
//
// `wrt_process` fills `out` with wrt_emit (zero or more records) or wrt_reject (the host
// dead-letters the event). Ownership: the event is freed after wrt_process returns, except
// what the transform took from it with wrt_take_row; a record handed to wrt_emit belongs to
// the outcome. Build with `sdk/c/build <project-dir> <out.wasm>`.
//
// What a transform may rely on: the same events give the same output, so a replay rewrites
// the same bytes. time() and CLOCK_REALTIME read 1970: time comes from the events
// (event->commit_time, the clock import). CLOCK_MONOTONIC is virtual: it moves 1 µs per
// reading and jumps ahead when the guest sleeps. getentropy() is seeded by the component's
// digest and the batch's first source position (never use it for secrets); rand() continues
// one stream from call to call, so seed it from the event when its numbers reach the
// output. `wrt deploy --events` refuses a transform whose output depends on earlier calls.
#ifndef WRT_H
#define WRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transformer.h"

typedef wrt_transform_types_change_event_t wrt_event_t;
typedef wrt_transform_types_outcome_t wrt_outcome_t;
typedef wrt_transform_types_row_t wrt_row_t;
typedef wrt_transform_types_column_t wrt_column_t;
typedef wrt_transform_types_value_t wrt_value_t;
typedef wrt_transform_types_timestamp_t wrt_timestamp_t;
typedef transformer_string_t wrt_string_t;

// Implemented by the transform.
const char *wrt_init(void);
void wrt_process(wrt_event_t *event, wrt_outcome_t *out);

// The value of config `key` as a new NUL-terminated string (free it), or NULL when unset.
char *wrt_config_get(const char *key);
// Whether the comma-separated `list` holds `name` (items trimmed of spaces).
bool wrt_list_contains(const char *list, const wrt_string_t *name);
// Writes a line to the host's log (WRT_TRANSFORM_LOGGING_LEVEL_*).
void wrt_log(wrt_transform_logging_level_t level, const char *message);

// Debezium's one-letter code of an operation: "c", "u", "d", "r" or "t".
const char *wrt_op_code(wrt_transform_types_operation_t op);
// Moves the row out of the event: as it stands after the change, or as it was for a
// delete. False when the event has none.
bool wrt_take_row(wrt_event_t *event, wrt_row_t *row);
// Whether `s` equals the NUL-terminated `text`.
bool wrt_string_eq(const wrt_string_t *s, const char *text);
// The WIT case name of a value's type ("text", "int", ...), for messages.
const char *wrt_type_name(const wrt_value_t *value);

// New values (text is copied).
wrt_value_t wrt_null(void);
wrt_value_t wrt_text(const char *text);
// Frees the value at `slot` and puts `value` there.
void wrt_value_replace(wrt_value_t *slot, wrt_value_t value);
// Sets column `name`, appending it when the row does not have it; takes `value`.
void wrt_row_set(wrt_row_t *row, const char *name, wrt_value_t value);
// Removes and frees every column for which `drop` is true.
void wrt_row_retain(wrt_row_t *row, bool (*drop)(const wrt_column_t *column));

// The host's primitives: native code shared by every language's SDK, so hashes, case
// mapping and timestamps agree byte for byte (C's tolower and isspace know ASCII only).

// SHA-256 of `len` bytes at `data`.
void wrt_sha256(const void *data, size_t len, uint8_t out[32]);
// HMAC-SHA-256 of `data` under `key`.
void wrt_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32]);
// HMAC-SHA-256 of `data` keyed by the configuration entry `config_key` (not NULL), so the
// transform's code need not handle a secret salt. False when the entry is not set.
bool wrt_hmac_sha256_config(const char *config_key, const void *data, size_t len, uint8_t out[32]);
// Unicode lower case, full and language-neutral (a final `Σ` becomes `ς`), as a new string
// (free it with transformer_string_free).
wrt_string_t wrt_lower(const wrt_string_t *text);
// `text` without leading and trailing Unicode White_Space, as a new string (free it).
wrt_string_t wrt_trim(const wrt_string_t *text);
// `len` bytes as lower-case hex into `out`, which holds 2 * len + 1 chars.
void wrt_hex(const uint8_t *bytes, size_t len, char *out);

// Longest rendering of wrt_rfc3339, with its terminator.
#define WRT_RFC3339_MAX 40
// RFC 3339 in UTC with a `Z` and 0, 3, 6 or 9 fraction digits as needed, years before 1970
// included: the host's own rendering. Returns the length.
int wrt_rfc3339(wrt_timestamp_t ts, char out[WRT_RFC3339_MAX]);

// Appends a record for `destination` (copied) holding `row` (taken) to the outcome.
void wrt_emit(wrt_outcome_t *out, const wrt_string_t *destination, wrt_row_t row);
// Makes the outcome an error: a short code and a printf-style message.
void wrt_reject(wrt_outcome_t *out, const char *code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#endif
