import { TransformError, Value, exportTransform, opCode, outputRecord, rowOf, setColumn } from "wrt-sdk";

class Tagger {
  constructor(config) {}

  process(event) {
    const row = rowOf(event);
    if (row == null) throw new TransformError("missing-row", `a \`${opCode(event.op)}\` event without its row`);
    setColumn(row, "_op", Value.text(opCode(event.op)));
    return [outputRecord(event.source.table, row)];
  }
}

export const transform = exportTransform(Tagger);
