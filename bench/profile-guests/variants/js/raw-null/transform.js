// Profile variant "raw-null": no SDK at all. The export answers every event with an empty
// list without reading it: what remains is the call itself and jco's lifting of the whole
// batch into JavaScript objects (and lowering the empty outcomes back).
export const transform = {
  init() {},
  process(events) {
    return events.map(() => ({ tag: "ok", val: [] }));
  },
};
