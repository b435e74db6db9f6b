// Module hooks for testing wrt.js under Node: the component's imports become fakes.
const fakes = new URL("./node-fakes.mjs", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith("wrt:transform/")) return { url: fakes, shortCircuit: true };
  return next(specifier, context);
}
