// Every event becomes its row plus what the guest read from two sources of non-determinism
// in JavaScript: `math_random`, two draws of Math.random(), and `date_now`, Date.now(), so the
// determinism tests can compare two runs.
import { Value, exportTransform, outputRecord, rowOf, setColumn } from "wrt-sdk";

class Entropy {
  constructor() {}

  process(event) {
    const row = rowOf(event) ?? [];
    setColumn(row, "math_random", Value.text(`${Math.random()} ${Math.random()}`));
    setColumn(row, "date_now", Value.text(String(Date.now())));
    return [outputRecord(event.source.table, row)];
  }
}

export const transform = exportTransform(Entropy);
