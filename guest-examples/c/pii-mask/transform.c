// PII masking and normalisation: the same transform as guest-examples/pii-mask (Rust), with
// the same configuration keys and the same output byte for byte.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "wrt.h"

static char *salt, *hash_columns, *mask_columns, *drop_columns;

static char *config_or(const char *key, const char *fallback) {
    char *value = wrt_config_get(key);
    return value ? value : strdup(fallback);
}

const char *wrt_init(void) {
    salt = config_or("salt", "");
    if (!*salt) wrt_log(WRT_TRANSFORM_LOGGING_LEVEL_WARN, "no `salt` configured: e-mail hashes are unsalted");
    hash_columns = config_or("hash-columns", "email");
    mask_columns = config_or("mask-columns", "phone");
    drop_columns = config_or("drop-columns", "password_hash");
    return NULL;
}

static bool dropped(const wrt_column_t *column) {
    return wrt_list_contains(drop_columns, &column->name);
}

// PII columns must hold text or null; anything else is a schema surprise worth a dead letter.
static bool text_or_null(const wrt_column_t *column, wrt_outcome_t *out) {
    uint8_t tag = column->value.tag;
    if (tag == WRT_TRANSFORM_TYPES_VALUE_TEXT || tag == WRT_TRANSFORM_TYPES_VALUE_NULL) return true;
    wrt_reject(out, "type-mismatch", "column `%.*s` should be text, found %s", (int)column->name.len,
               (const char *)column->name.ptr, wrt_type_name(&column->value));
    return false;
}

// sha256(salt + lower(trim(text))) as hex, with the host's hash and Unicode case mapping,
// as in every language.
static wrt_value_t hashed(const wrt_string_t *text) {
    wrt_string_t trimmed = wrt_trim(text);
    wrt_string_t lowered = wrt_lower(&trimmed);
    size_t salt_len = strlen(salt);
    char *input = malloc(salt_len + lowered.len);
    memcpy(input, salt, salt_len);
    memcpy(input + salt_len, lowered.ptr, lowered.len);
    uint8_t digest[32];
    wrt_sha256(input, salt_len + lowered.len, digest);
    free(input);
    transformer_string_free(&trimmed);
    transformer_string_free(&lowered);
    char hex[65];
    wrt_hex(digest, sizeof digest, hex);
    return wrt_text(hex);
}

// "+44 20 7946 0958" -> "***0958": enough to recognise a number, not to call it.
static wrt_value_t masked(const wrt_string_t *text) {
    char out[8] = "***";
    size_t digits = 0;
    for (size_t i = 0; i < text->len; i++) {
        if (!isdigit(text->ptr[i])) continue;
        if (digits == 4) memmove(out + 3, out + 4, 3), digits--;
        out[3 + digits++] = (char)text->ptr[i];
    }
    out[3 + digits] = '\0';
    return wrt_text(out);
}

void wrt_process(wrt_event_t *event, wrt_outcome_t *out) {
    wrt_row_t row = {0};
    if (event->op != WRT_TRANSFORM_TYPES_OPERATION_TRUNCATE && !wrt_take_row(event, &row)) {
        wrt_reject(out, "missing-row", "a `%s` event without its row", wrt_op_code(event->op));
        return;
    }
    wrt_row_retain(&row, dropped);
    char time[WRT_RFC3339_MAX];
    for (size_t i = 0; i < row.len; i++) {
        wrt_column_t *column = &row.ptr[i];
        bool hash = wrt_list_contains(hash_columns, &column->name);
        bool mask = !hash && wrt_list_contains(mask_columns, &column->name);
        if (hash || mask) {
            if (!text_or_null(column, out)) {
                wrt_transform_types_row_free(&row);
                return;
            }
            if (column->value.tag == WRT_TRANSFORM_TYPES_VALUE_TEXT) {
                const wrt_string_t *text = &column->value.val.text;
                wrt_value_replace(&column->value, hash ? hashed(text) : masked(text));
            }
        } else if (column->value.tag == WRT_TRANSFORM_TYPES_VALUE_TIMESTAMP) {
            wrt_rfc3339(column->value.val.timestamp, time);
            wrt_value_replace(&column->value, wrt_text(time));
        }
    }
    wrt_row_set(&row, "_op", wrt_text(wrt_op_code(event->op)));
    wrt_rfc3339(event->commit_time, time);
    wrt_row_set(&row, "_commit_time", wrt_text(time));
    wrt_emit(out, &event->source.table, row);
}
