// The check that a workgroup of 4 or 8 invocations is one subgroup numbered from 0 (runtime/webgpu/subgroup-probe.ts).

import { describe, expect, it } from 'vitest';
import { testDevices } from './devices.ts';
import { lanesHold, probeSource } from '../runtime/webgpu/subgroup-probe.ts';
import { subgroupLanes } from '../compiler/codegen/wgsl.ts';
import { adapterInfo, hasFeature, subgroupMinSize } from '../runtime/webgpu/device.ts';
import { isSoftwareAdapter } from '../runtime/webgpu/autotune.ts';

/**
 * What the probe writes for workgroups whose invocation li sits in lane `lane(li)`; a broadcast from
 * lane q gives `broadcast(q)`, by default the local index of the invocation in lane q (-1: none).
 */
const probeOutput = (lanes: number, groups: number, lane: (li: number) => number, broadcast?: (q: number) => number): number[] => {
  const inLane = (q: number) => [...Array(lanes).keys()].find((li) => lane(li) === q) ?? -1;
  const out: number[] = [];
  for (let w = 0; w < groups; w++) for (let li = 0; li < lanes; li++) out.push(lane(li), ...Array.from({ length: lanes }, (_, q) => (broadcast ?? inLane)(q)));
  return out;
};

describe('subgroup lanes probe', () => {
  it('holds where each workgroup is one subgroup numbered 0..lanes-1, in any order', () => {
    expect(lanesHold(probeOutput(8, 4, (li) => li), 8)).toBe(true);
    expect(lanesHold(probeOutput(4, 4, (li) => 3 - li), 4)).toBe(true);
  });
  it('fails where lanes start past 0, repeat, or a broadcast reads another lane', () => {
    expect(lanesHold(probeOutput(8, 4, (li) => li + 8), 8)).toBe(false); // the second half of a 16-lane subgroup
    expect(lanesHold(probeOutput(8, 4, (li) => li % 4), 8)).toBe(false); // two subgroups of 4
    expect(lanesHold(probeOutput(4, 4, (li) => li, (q) => (q + 1) % 4), 4)).toBe(false);
  });
  it('probes 8 lanes from subgroups of 8 up, 4 from 4, none below', () => {
    expect([2, 4, 8, 32].map(subgroupLanes)).toEqual([0, 4, 8, 8]);
    expect(probeSource(4)).toContain('@workgroup_size(4, 1)');
    expect(probeSource(4)).toContain('subgroupBroadcast(li, 3u)');
  });
});

describe.runIf((await testDevices()).includes('webgpu'))('subgroup lanes probe on the test device', () => {
  it('holds on the software adapters kiln runs its tests on (lavapipe: subgroups of 8)', () => {
    const info = adapterInfo();
    if (isSoftwareAdapter(info) && hasFeature('subgroups')) expect(subgroupMinSize()).toBe(info.subgroupMinSize);
    else expect(subgroupMinSize() === 0 || subgroupMinSize() === info.subgroupMinSize).toBe(true);
  });
});
