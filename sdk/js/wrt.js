// Write wrt transforms in JavaScript.
//
// A transform is a class: its constructor reads the configuration, `process(event)` returns
// the output records of one change event or throws a `TransformError` (the host dead-letters
// that event). Export it from the entry module as `transform`:
//
//     import { exportTransform, outputRecord, rowOf } from "wrt-sdk";
//     class Passthrough {
//       constructor(config) {}
//       process(event) {
//         const row = rowOf(event);
//         return row ? [outputRecord(event.source.table, row)] : [];
//       }
//     }
//     export const transform = exportTransform(Passthrough);
//
// Build with `sdk/js/build <project-dir> <out.wasm>`; values follow jco's mapping of
// `sdk/wit/transform.wit` (variants are `{ tag, val }`, s64/u64 are BigInt).
//
// What a transform may rely on: the same events give the same output, so a replay rewrites
// the same bytes. `Math.random()` draws from a generator seeded by the source position of
// the event being processed (topic, partition, offset): a replay of the event draws the same
// numbers, on any instance and in any batch; never use it for secrets. `Date.now()` stays at
// the moment the component was built (the build gives it no clock): time comes from the
// events (`event.commitTime`, `now()`). Output must not depend on
// state kept from earlier events (a cache that gives the same answer either way is fine):
// `wrt deploy --events` refuses a transform whose output changes on a second pass.

import * as wit from "wrt:transform/config@0.1.1";
import { log as witLog } from "wrt:transform/logging@0.1.1";
import { now as witNow } from "wrt:transform/clock@0.1.1";
import * as host from "wrt:transform/primitives@0.1.1";

/** Why a transform rejected one event: a short machine-readable `code` and a message. */
export class TransformError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The transform's configuration, as set by the host. */
export const config = {
  /** The value of `key`, or undefined. */
  get: (key) => wit.get(key) ?? undefined,
  /** The value of `key`, or `fallback` when unset. */
  getOr: (key, fallback) => wit.get(key) ?? fallback,
  /** A comma-separated list (empty items dropped), or undefined when unset. */
  list(key) {
    const raw = wit.get(key);
    return raw == null ? undefined : raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  },
  /** Every `[key, value]`, sorted by key. */
  entries: () => wit.entries(),
};

/** Writes a line to the host's log; `level` is trace, debug, info, warn or error. */
export const log = (level, message) => witLog(level, message);

/** The newest commit time in the current batch. */
export const now = () => witNow();

/** Constructors for column values. */
export const Value = {
  null: () => ({ tag: "null" }),
  text: (val) => ({ tag: "text", val }),
  int: (val) => ({ tag: "int", val: BigInt(val) }),
};

/** The row as it stands after the change, or as it was for a delete. */
export const rowOf = (event) => (event.op === "delete" ? event.before : event.after);

const OP_CODES = { create: "c", update: "u", delete: "d", read: "r", truncate: "t" };

/** Debezium's one-letter code of an operation: c, u, d, r or t. */
export const opCode = (op) => OP_CODES[op];

/** A record for `destination`; `partition` is a list of `[name, value]`. */
export const outputRecord = (destination, row, partition = []) => ({ destination, row, partition });

/** The value of column `name`, or undefined. */
export const getColumn = (row, name) => row.find((c) => c.name === name)?.value;

/** Sets column `name`, appending it when the row does not have it. */
export function setColumn(row, name, value) {
  const column = row.find((c) => c.name === name);
  if (column) column.value = value;
  else row.push({ name, value });
}

// The host's primitives: native code shared by every language's SDK, so hashes and case
// mapping agree byte for byte (and run faster than they would in JS).

const utf8 = (data) => (typeof data === "string" ? new TextEncoder().encode(data) : data);

/** SHA-256 of a string's UTF-8 bytes or of a Uint8Array, as a Uint8Array. */
export const sha256 = (data) => host.sha256(utf8(data));

/** HMAC-SHA-256 of `data` under `key` (strings are hashed as UTF-8), as a Uint8Array. */
export const hmacSha256 = (key, data) => host.hmacSha256(utf8(key), utf8(data));

/**
 * HMAC-SHA-256 of `data` keyed by the configuration entry `configKey`, so the transform's code
 * need not handle a secret salt; undefined when it is not set.
 */
export const hmacSha256Config = (configKey, data) => host.hmacSha256Config(configKey, utf8(data)) ?? undefined;

/** Unicode lower case, full and language-neutral (a final `Σ` becomes `ς`): Rust's `to_lowercase`. */
export const lower = (text) => host.lower(text);

/** Without leading and trailing Unicode White_Space (`String.prototype.trim` also strips U+FEFF). */
export const trim = (text) => host.trim(text);

/** Lowercase hexadecimal of a Uint8Array. */
export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** Lowercase hex SHA-256 of a string's UTF-8 bytes. */
export const sha256Hex = (text) => hex(sha256(text));

/**
 * RFC 3339 in UTC with a `Z` and 0, 3, 6 or 9 fraction digits as needed, exactly as the host
 * and the Rust SDK render timestamps. In JavaScript, not the host's `rfc3339`: componentize-js
 * traps when a negative s64 is passed to an import (a time before 1970 would).
 */
export function rfc3339({ seconds, nanos }) {
  const days = floorDiv(seconds, 86400n);
  const secs = Number(seconds - days * 86400n);
  const [y, m, d] = civilFromDays(days);
  const pad = (n, w) => String(n).padStart(w, "0");
  // Rust's `{:04}`: the sign counts towards the width.
  const year = y < 0n ? "-" + pad(-y, 3) : pad(y, 4);
  const time = `${pad(Math.floor(secs / 3600), 2)}:${pad(Math.floor(secs / 60) % 60, 2)}:${pad(secs % 60, 2)}`;
  return `${year}-${pad(m, 2)}-${pad(d, 2)}T${time}${fraction(nanos)}Z`;
}

function fraction(nanos) {
  if (nanos === 0) return "";
  if (nanos % 1_000_000 === 0) return "." + String(nanos / 1_000_000).padStart(3, "0");
  if (nanos % 1_000 === 0) return "." + String(nanos / 1_000).padStart(6, "0");
  return "." + String(nanos).padStart(9, "0");
}

const floorDiv = (a, b) => (a >= 0n ? a / b : -((-a + b - 1n) / b));

// Howard Hinnant's civil_from_days, in BigInt so every s64 second count stays exact.
function civilFromDays(days) {
  const z = days + 719468n;
  const era = floorDiv(z, 146097n);
  const doe = z - era * 146097n;
  const yoe = (doe - doe / 1460n + doe / 36524n - doe / 146096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const d = doy - (153n * mp + 2n) / 5n + 1n;
  const m = mp < 10n ? mp + 3n : mp - 9n;
  return [yoe + era * 400n + (m <= 2n ? 1n : 0n), m, d];
}

// The event `Math.random()` draws for, and its generator, made at the event's first draw.
// The engine's own generator has a seed fixed at build time whose stream would carry from
// one call to the next, so a replay on a fresh instance would draw other numbers.
let drawingFor = null;
let draw = null;
Math.random = () => (draw ??= generator(drawingFor))();

// Outside any event (module top level, `init`) the seed is the first 16 bytes of SHA-256(""):
// the module's top level runs while the component is built, when no host import answers.
const NO_EVENT_SEED = [0xe3b0c442, 0x98fc1c14, 0x9afbf4c8, 0x996fb924];

/** sfc32 seeded by the SHA-256 of the event's source position; 53-bit doubles in [0, 1). */
function generator(event) {
  const source = event?.source;
  let [a, b, c, d] = NO_EVENT_SEED;
  if (source) {
    const hash = sha256(`${source.topic}/${source.partition}/${source.offset}`);
    const seed = new DataView(hash.buffer, hash.byteOffset, hash.byteLength);
    [a, b, c, d] = [0, 4, 8, 12].map((at) => seed.getUint32(at));
  }
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (((c << 21) | (c >>> 11)) + t) | 0;
    return t >>> 0;
  };
  return () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
}

/**
 * The component's `transform` export for a transform class: one instance made by `init`,
 * then `process(event)` per event, a thrown `TransformError` becoming that event's error.
 */
export function exportTransform(Class) {
  let instance;
  return {
    init() {
      [drawingFor, draw] = [null, null];
      instance = new Class(config);
    },
    process(events) {
      return events.map((event) => {
        [drawingFor, draw] = [event, null];
        try {
          return { tag: "ok", val: instance.process(event) };
        } catch (e) {
          if (e instanceof TransformError) return { tag: "err", val: { code: e.code, message: e.message } };
          throw e;
        }
      });
    },
  };
}
