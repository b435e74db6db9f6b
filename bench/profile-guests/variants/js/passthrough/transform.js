// Profile variant "passthrough": returns the event's row unchanged as one record: null +
// lowering a whole row back out of JavaScript (the PII output has about the same size).
import { exportTransform, outputRecord, rowOf } from "wrt-sdk";

class Passthrough {
  constructor(config) {}
  process(event) {
    return [outputRecord(event.source.table, rowOf(event) ?? [])];
  }
}

export const transform = exportTransform(Passthrough);
