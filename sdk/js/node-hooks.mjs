// Module hooks for testing wrt.js under Node: the component's imports become fakes and npm
// packages come from the cached toolchain (WRT_JS_MODULES).
const fakes = new URL("./node-fakes.mjs", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith("wrt:transform/")) return { url: fakes, shortCircuit: true };
  if (specifier.startsWith("@noble/")) {
    return next(specifier, { ...context, parentURL: `file://${process.env.WRT_JS_MODULES}/` });
  }
  return next(specifier, context);
}
