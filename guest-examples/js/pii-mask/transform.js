// PII masking and normalisation: the same transform as `guest-examples/pii-mask` (Rust),
// with the same configuration keys and the same output byte for byte.
// Hashing, trimming and lower-casing are the host's primitives, as in every language.
import {
  TransformError, Value, exportTransform, log, lower, opCode, outputRecord, rfc3339, rowOf,
  setColumn, sha256Hex, trim,
} from "wrt-sdk";

class PiiMask {
  constructor(config) {
    this.salt = config.getOr("salt", "");
    if (this.salt === "") log("warn", "no `salt` configured: e-mail hashes are unsalted");
    this.hash = config.list("hash-columns") ?? ["email"];
    this.mask = config.list("mask-columns") ?? ["phone"];
    this.drop = config.list("drop-columns") ?? ["password_hash"];
  }

  process(event) {
    const source = rowOf(event);
    if (event.op !== "truncate" && source == null) {
      throw new TransformError("missing-row", `a \`${opCode(event.op)}\` event without its row`);
    }
    const row = event.op === "truncate" ? [] : source.filter((c) => !this.drop.includes(c.name));
    for (const column of row) {
      if (this.hash.includes(column.name)) {
        const text = textOrNull(column);
        column.value = text == null ? Value.null() : Value.text(sha256Hex(this.salt + lower(trim(text))));
      } else if (this.mask.includes(column.name)) {
        const text = textOrNull(column);
        column.value = text == null ? Value.null() : Value.text("***" + (text.match(/[0-9]/g) ?? []).slice(-4).join(""));
      } else if (column.value.tag === "timestamp") {
        column.value = Value.text(rfc3339(column.value.val));
      }
    }
    setColumn(row, "_op", Value.text(opCode(event.op)));
    setColumn(row, "_commit_time", Value.text(rfc3339(event.commitTime)));
    return [outputRecord(event.source.table, row)];
  }
}

// PII columns must hold text; anything else is a schema surprise worth a dead letter.
function textOrNull({ name, value }) {
  if (value.tag === "null") return null;
  if (value.tag === "text") return value.val;
  throw new TransformError("type-mismatch", `column \`${name}\` should be text, found ${value.tag}`);
}

export const transform = exportTransform(PiiMask);
