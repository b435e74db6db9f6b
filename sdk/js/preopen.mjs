// Preloaded into jco (node --import). Two mends of the tools' behaviour.
//
// 1. jco 1.35 runs its bundled wasm-tools on
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

// 2. The bindings componentize-js generates lift every string with `new TextDecoder()`,
// which drops a leading U+FEFF (the WHATWG decoder's BOM sniffing), so a text value that
// starts with one reached JavaScript without it (sdk/conformance has such a value). They
// are written to a file before the engine is initialised; this makes their decoder keep it.
// A componentize run whose bindings were not mended fails, so a jco that writes them some
// other way cannot silently bring the fault back.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

const DROPS_BOM = "new TextDecoder()";
const KEEPS_BOM = 'new TextDecoder("utf-8", { ignoreBOM: true })';
let mended = false;
const writeFile = fs.promises.writeFile;
fs.promises.writeFile = (path, data, ...rest) => {
  if (typeof data === "string" && data.includes("TEXT_DECODER_UTF8")) {
    data = data.replaceAll(DROPS_BOM, KEEPS_BOM);
    if (data.includes(DROPS_BOM) || !data.includes(KEEPS_BOM)) {
      throw new Error("sdk/js/preopen.mjs: the bindings' TextDecoder changed; update the BOM mend");
    }
    mended = true;
  }
  return writeFile(path, data, ...rest);
};
syncBuiltinESMExports();
if (isMainThread && process.argv.includes("componentize")) {
  process.on("exit", (code) => {
    if (code === 0 && !mended) {
      console.error("sdk/js/preopen.mjs: componentize wrote no bindings this file could mend (BOM); update it");
      process.exitCode = 1;
    }
  });
}
