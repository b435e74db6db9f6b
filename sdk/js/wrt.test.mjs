// Unit tests of the JavaScript SDK layer: node --import ./sdk/js/node-register.mjs --test sdk/js/wrt.test.mjs
import assert from "node:assert/strict";
import { test } from "node:test";

import { config as fakeConfig } from "./node-fakes.mjs";
import { TransformError, config, exportTransform, hmacSha256Config, rfc3339, sha256Hex } from "./wrt.js";

test("timestamps render as the host and the Rust SDK render them", () => {
  const ts = (seconds, nanos) => rfc3339({ seconds: BigInt(seconds), nanos });
  assert.equal(ts(0, 0), "1970-01-01T00:00:00Z");
  assert.equal(ts(1_714_521_600, 250_000_000), "2024-05-01T00:00:00.250Z");
  assert.equal(ts(1_714_521_600, 250_000), "2024-05-01T00:00:00.000250Z");
  assert.equal(ts(-1, 5), "1969-12-31T23:59:59.000000005Z");
  assert.equal(ts(-30_610_224_000, 0), "1000-01-01T00:00:00Z");
  assert.equal(ts(253_402_300_799, 0), "9999-12-31T23:59:59Z");
});

test("config lists are trimmed and drop empty items", () => {
  fakeConfig.set("cols", " a, b ,,c ");
  assert.deepEqual(config.list("cols"), ["a", "b", "c"]);
  assert.equal(config.list("unset"), undefined);
  assert.equal(config.getOr("unset", "x"), "x");
});

test("a thrown TransformError becomes that event's error; other events go on", () => {
  class Picky {
    process(event) {
      if (event.n === 2) throw new TransformError("odd", "no twos");
      return [];
    }
  }
  const transform = exportTransform(Picky);
  transform.init();
  assert.deepEqual(transform.process([{ n: 1 }, { n: 2 }]), [
    { tag: "ok", val: [] },
    { tag: "err", val: { code: "odd", message: "no twos" } },
  ]);
});

test("sha256Hex hashes UTF-8", () => {
  assert.equal(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.equal(sha256Hex("é").length, 64);
});

test("hmacSha256Config is keyed by a configuration entry, undefined without it", () => {
  fakeConfig.set("secret", "key");
  assert.equal(hmacSha256Config("secret", "data").length, 32);
  assert.equal(hmacSha256Config("no-such-entry", "data"), undefined);
});

test("Math.random() draws the same numbers for the same event, whatever ran before", () => {
  class Dice {
    process() {
      return [Math.random(), Math.random()];
    }
  }
  const event = (offset) => ({ source: { topic: "shop.shop.orders", partition: 0, offset: BigInt(offset) } });
  const used = exportTransform(Dice);
  used.init();
  const [first] = used.process([event(1), event(2)]);
  const [again] = used.process([event(1)]);
  const fresh = exportTransform(Dice);
  fresh.init();
  const [, second] = fresh.process([event(3), event(2)]);
  assert.deepEqual(again, first);
  assert.deepEqual(second, used.process([event(2)])[0]);
  const draws = [...first.val, ...second.val];
  assert.equal(new Set(draws).size, 4);
  assert.ok(draws.every((x) => x >= 0 && x < 1));
});
