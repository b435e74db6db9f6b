// Profile variant "two-cols": reads the two PII columns (email, phone) through the SDK and
// returns them, unchanged, as a two-column record. A transform that touches two columns.
import { Value, exportTransform, getColumn, outputRecord, rowOf } from "wrt-sdk";

class TwoCols {
  constructor(config) {}
  process(event) {
    const row = rowOf(event);
    if (row == null) return [];
    const email = getColumn(row, "email") ?? Value.null();
    const phone = getColumn(row, "phone") ?? Value.null();
    return [outputRecord(event.source.table, [{ name: "email", value: email }, { name: "phone", value: phone }])];
  }
}

export const transform = exportTransform(TwoCols);
