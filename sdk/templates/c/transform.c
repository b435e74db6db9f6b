#include "wrt.h"

const char *wrt_init(void) {
    return NULL;
}

void wrt_process(wrt_event_t *event, wrt_outcome_t *out) {
    wrt_row_t row;
    if (!wrt_take_row(event, &row)) {
        wrt_reject(out, "missing-row", "a `%s` event without its row", wrt_op_code(event->op));
        return;
    }
    wrt_row_set(&row, "_op", wrt_text(wrt_op_code(event->op)));
    wrt_emit(out, &event->source.table, row);
}
