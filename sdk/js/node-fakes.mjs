// The host's side of the imports, for wrt.test.mjs.
export const config = new Map();
export const logged = [];
export const get = (key) => config.get(key);
export const entries = () => [...config.entries()].sort();
export const log = (level, message) => logged.push([level, message]);
export const now = () => ({ seconds: 0n, nanos: 0 });
