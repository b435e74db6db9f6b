// Rolldown settings for `jco componentize --bundle`: `wrt-sdk` is this folder's wrt.js and
// npm packages come from the cached toolchain, so a project needs no node_modules of its own.
import { fileURLToPath } from "node:url";

export default {
  resolve: {
    alias: { "wrt-sdk": fileURLToPath(new URL("./wrt.js", import.meta.url)) },
    modules: [process.env.WRT_JS_MODULES],
  },
  external: [/^wrt:transform\//],
};
