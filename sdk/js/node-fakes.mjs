// The host's side of the imports, for wrt.test.mjs.
export const config = new Map();
export const logged = [];
export const get = (key) => config.get(key);
export const entries = () => [...config.entries()].sort();
export const log = (level, message) => logged.push([level, message]);
export const now = () => ({ seconds: 0n, nanos: 0 });
// Stand-ins for the host's primitives: Node's own code, close enough for the SDK's tests
// (the real ones are checked through the host by sdk/conformance).
import { createHash, createHmac } from "node:crypto";
export const sha256 = (data) => new Uint8Array(createHash("sha256").update(data).digest());
export const hmacSha256 = (key, data) => new Uint8Array(createHmac("sha256", key).update(data).digest());
export const hmacSha256Config = (key, data) => (config.has(key) ? hmacSha256(config.get(key), data) : undefined);
export const lower = (text) => text.toLowerCase();
export const trim = (text) => text.trim();
