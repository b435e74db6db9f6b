// node --import this file: installs node-hooks.mjs before the tests load.
import { register } from "node:module";

register(new URL("./node-hooks.mjs", import.meta.url));
