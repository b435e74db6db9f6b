// Preloaded into jco (node --import): jco 1.35 runs its bundled wasm-tools on
// preview2-shim 0.26, which no longer preopens the host's root by default, so without this
// jco cannot read the WIT folder ("failed to read path for WIT ... os error 44").
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { isMainThread } from "node:worker_threads";

const modules = process.env.WRT_JS_MODULES;
const copies = [join(modules, "@bytecodealliance")];
for (const pkg of readdirSync(copies[0])) copies.push(join(copies[0], pkg, "node_modules", "@bytecodealliance"));
// Workers inherit --import; only the main thread runs the bundled tools.
for (const dir of isMainThread ? copies : []) {
  const shim = join(dir, "preview2-shim", "dist", "nodejs", "filesystem.js");
  try {
    const { _setPreopens } = await import(shim);
    _setPreopens({ "/": "/" });
  } catch (e) {
    if (e.code !== "ERR_MODULE_NOT_FOUND") throw e;
  }
}
