// Module resolution for the tests: the WIT imports of weir.js
// (`weir:operator/state@0.1.0`, ...) resolve to the stand-in host.mjs,
// as componentize-js resolves them to the real host in a component.
const host = new URL("./host.mjs", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith("weir:operator/")) return { url: host, shortCircuit: true };
  return next(specifier, context);
}
