#include "wrt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void string_from(wrt_string_t *s, const char *text) {
    transformer_string_dup(s, text);
}

char *wrt_config_get(const char *key) {
    wrt_string_t k, value;
    transformer_string_set(&k, key);
    if (!wrt_transform_config_get(&k, &value)) return NULL;
    char *out = malloc(value.len + 1);
    memcpy(out, value.ptr, value.len);
    out[value.len] = '\0';
    transformer_string_free(&value);
    return out;
}

bool wrt_list_contains(const char *list, const wrt_string_t *name) {
    const char *item = list;
    while (item) {
        const char *end = strchr(item, ',');
        size_t len = end ? (size_t)(end - item) : strlen(item);
        while (len && *item == ' ') item++, len--;
        while (len && item[len - 1] == ' ') len--;
        if (len && len == name->len && memcmp(item, name->ptr, len) == 0) return true;
        item = end ? end + 1 : NULL;
    }
    return false;
}

void wrt_log(wrt_transform_logging_level_t level, const char *message) {
    wrt_string_t m;
    transformer_string_set(&m, message);
    wrt_transform_logging_log(level, &m);
}

const char *wrt_op_code(wrt_transform_types_operation_t op) {
    static const char *const codes[] = {"c", "u", "d", "r", "t"};
    return codes[op];
}

bool wrt_take_row(wrt_event_t *event, wrt_row_t *row) {
    wrt_transform_types_option_row_t *slot =
        event->op == WRT_TRANSFORM_TYPES_OPERATION_DELETE ? &event->before : &event->after;
    if (!slot->is_some) return false;
    *row = slot->val;
    slot->is_some = false;
    return true;
}

bool wrt_string_eq(const wrt_string_t *s, const char *text) {
    return s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

const char *wrt_type_name(const wrt_value_t *value) {
    static const char *const names[] = {"null", "boolean", "int",  "float", "decimal",  "text",
                                        "bytes", "json",   "date", "time",  "timestamp"};
    return names[value->tag];
}

wrt_value_t wrt_null(void) {
    return (wrt_value_t){.tag = WRT_TRANSFORM_TYPES_VALUE_NULL};
}

wrt_value_t wrt_text(const char *text) {
    wrt_value_t value = {.tag = WRT_TRANSFORM_TYPES_VALUE_TEXT};
    string_from(&value.val.text, text);
    return value;
}

void wrt_value_replace(wrt_value_t *slot, wrt_value_t value) {
    wrt_transform_types_value_free(slot);
    *slot = value;
}

void wrt_row_set(wrt_row_t *row, const char *name, wrt_value_t value) {
    for (size_t i = 0; i < row->len; i++) {
        if (wrt_string_eq(&row->ptr[i].name, name)) {
            wrt_value_replace(&row->ptr[i].value, value);
            return;
        }
    }
    row->ptr = realloc(row->ptr, (row->len + 1) * sizeof *row->ptr);
    string_from(&row->ptr[row->len].name, name);
    row->ptr[row->len].value = value;
    row->len++;
}

void wrt_row_retain(wrt_row_t *row, bool (*drop)(const wrt_column_t *column)) {
    size_t kept = 0;
    for (size_t i = 0; i < row->len; i++) {
        if (drop(&row->ptr[i])) {
            wrt_transform_types_column_free(&row->ptr[i]);
        } else {
            row->ptr[kept++] = row->ptr[i];
        }
    }
    row->len = kept;
}

// The bindings take non-const pointers to arguments they only read.
static transformer_list_u8_t bytes_of(const void *data, size_t len) {
    return (transformer_list_u8_t){(uint8_t *)data, len};
}

static void copy_32(transformer_list_u8_t *digest, uint8_t out[32]) {
    memcpy(out, digest->ptr, digest->len < 32 ? digest->len : 32);
    transformer_list_u8_free(digest);
}

void wrt_sha256(const void *data, size_t len, uint8_t out[32]) {
    transformer_list_u8_t in = bytes_of(data, len), digest;
    wrt_transform_primitives_sha256(&in, &digest);
    copy_32(&digest, out);
}

void wrt_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32]) {
    transformer_list_u8_t k = bytes_of(key, key_len), in = bytes_of(data, len), mac;
    wrt_transform_primitives_hmac_sha256(&k, &in, &mac);
    copy_32(&mac, out);
}

bool wrt_hmac_sha256_config(const char *config_key, const void *data, size_t len, uint8_t out[32]) {
    transformer_string_t key;
    transformer_string_set(&key, config_key);
    transformer_list_u8_t in = bytes_of(data, len), mac;
    if (!wrt_transform_primitives_hmac_sha256_config(&key, &in, &mac)) return false;
    copy_32(&mac, out);
    return true;
}

wrt_string_t wrt_lower(const wrt_string_t *text) {
    wrt_string_t in = *text, out;
    wrt_transform_primitives_lower(&in, &out);
    return out;
}

wrt_string_t wrt_trim(const wrt_string_t *text) {
    wrt_string_t in = *text, out;
    wrt_transform_primitives_trim(&in, &out);
    return out;
}

void wrt_hex(const uint8_t *bytes, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
    out[2 * len] = '\0';
}

int wrt_rfc3339(wrt_timestamp_t ts, char out[WRT_RFC3339_MAX]) {
    wrt_string_t text;
    wrt_transform_primitives_rfc3339(&ts, &text);
    int len = snprintf(out, WRT_RFC3339_MAX, "%.*s", (int)text.len, (const char *)text.ptr);
    transformer_string_free(&text);
    return len;
}

void wrt_emit(wrt_outcome_t *out, const wrt_string_t *destination, wrt_row_t row) {
    wrt_transform_types_list_output_record_t *records = &out->val.ok;
    records->ptr = realloc(records->ptr, (records->len + 1) * sizeof *records->ptr);
    wrt_transform_types_output_record_t *record = &records->ptr[records->len++];
    transformer_string_dup_n(&record->destination, (const char *)destination->ptr,
                             destination->len);
    record->row = row;
    record->partition = (transformer_list_tuple2_string_string_t){0};
}

void wrt_reject(wrt_outcome_t *out, const char *code, const char *format, ...) {
    wrt_transform_types_outcome_free(out);
    out->is_err = true;
    string_from(&out->val.err.code, code);
    va_list args;
    va_start(args, format);
    int len = vsnprintf(NULL, 0, format, args);
    va_end(args);
    char *message = malloc((size_t)len + 1);
    va_start(args, format);
    vsnprintf(message, (size_t)len + 1, format, args);
    va_end(args);
    out->val.err.message = (wrt_string_t){.ptr = (uint8_t *)message, .len = (size_t)len};
}

bool exports_wrt_transform_transform_init(wrt_string_t *err) {
    const char *problem = wrt_init();
    if (problem) string_from(err, problem);
    return problem == NULL;
}

void exports_wrt_transform_transform_process(
    exports_wrt_transform_transform_list_change_event_t *events,
    exports_wrt_transform_transform_list_outcome_t *ret) {
    ret->len = events->len;
    ret->ptr = calloc(events->len ? events->len : 1, sizeof *ret->ptr);
    for (size_t i = 0; i < events->len; i++) wrt_process(&events->ptr[i], &ret->ptr[i]);
    exports_wrt_transform_transform_list_change_event_free(events);
}
