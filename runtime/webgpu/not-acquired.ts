// The error of a WebGPU call that needs the device before it has been acquired. Its own module so that
// the lazy facade (lazy.ts) gives the same error before the WebGPU code has even been loaded.
export function notAcquired(what: string): Error {
  return new Error(
    `kiln: ${what}: the WebGPU device has not been acquired yet; ` +
      'call `await kiln.webgpu.init()` (or check `await kiln.webgpu.available()`) first',
  );
}
