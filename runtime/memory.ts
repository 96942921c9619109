// kiln.memory(): live storages and their bytes per device, for users who suspect a leak.
//
// Each backend counts its storages as they are created and garbage-collected. Figures fall only
// once JavaScript's collector has run: a tensor that is unreachable but not yet collected still
// counts. WebGPU counts from the start (its buffer pool needs the bookkeeping anyway); the CPU's
// count costs time on every tensor, so it starts with the first call (its `tracked` is false then)
// or, with KILN_TRACK_MEMORY=1, when kiln loads.

import { DEVICES, registeredBackend, type DeviceMemory, type DeviceName } from './device.ts';

export type { DeviceMemory } from './device.ts';
export type MemoryInfo = Record<DeviceName, DeviceMemory>;

export function memory(): MemoryInfo {
  const out = {} as MemoryInfo;
  for (const d of DEVICES) out[d] = registeredBackend(d)?.memory() ?? { storages: 0, bytes: 0, cachedBytes: 0, tracked: false };
  return out;
}
