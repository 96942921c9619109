// Whether a workgroup of a few invocations is one subgroup whose lanes are numbered from 0: what the
// matmul's and convolution's lanes variants count on (compiler/codegen/wgsl/matmul.ts). WebGPU does
// not promise it, so kiln checks it once per device with a tiny kernel before offering the variants,
// at the lane count they would use (subgroupLanes).

const GROUPS = 4;

/** Each invocation writes its subgroup lane, then what subgroupBroadcast gives from each lane (its local index). */
export function probeSource(lanes: number): string {
  const broadcasts = Array.from({ length: lanes }, (_, q) => `  out[base + ${q + 1}u] = subgroupBroadcast(li, ${q}u);`);
  return [
    'enable subgroups;',
    '@group(0) @binding(0) var<storage, read_write> out: array<u32>;',
    `@compute @workgroup_size(${lanes}, 1)`,
    'fn main(@builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) sgl: u32, @builtin(workgroup_id) wid: vec3<u32>) {',
    `  let base = (wid.x * ${lanes}u + li) * ${lanes + 1}u;`,
    '  out[base] = sgl;',
    ...broadcasts,
    '}',
  ].join('\n');
}

/**
 * Whether the probe's output says every workgroup is one subgroup numbered 0..lanes-1: the lanes are
 * a permutation of 0..lanes-1, and a broadcast from lane q gives the local index of the invocation
 * in lane q, to every invocation.
 */
export function lanesHold(out: ArrayLike<number>, lanes: number, groups = GROUPS): boolean {
  for (let w = 0; w < groups; w++) {
    const at = (li: number, field: number) => out[(w * lanes + li) * (lanes + 1) + field];
    const invocationOfLane = new Map<number, number>();
    for (let li = 0; li < lanes; li++) invocationOfLane.set(at(li, 0), li);
    if (invocationOfLane.size !== lanes || [...invocationOfLane.keys()].some((lane) => lane >= lanes)) return false;
    for (let li = 0; li < lanes; li++) {
      for (let q = 0; q < lanes; q++) if (at(li, q + 1) !== invocationOfLane.get(q)) return false;
    }
  }
  return true;
}

/** Runs the probe on `device` (which has the 'subgroups' feature); any failure reads as false. */
export async function probeSubgroupLanes(device: GPUDevice, lanes: number): Promise<boolean> {
  const bytes = GROUPS * lanes * (lanes + 1) * 4;
  let out: GPUBuffer | null = null, read: GPUBuffer | null = null;
  let ok = false;
  device.pushErrorScope('validation');
  try {
    const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module: device.createShaderModule({ code: probeSource(lanes) }), entryPoint: 'main' } });
    out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: out } }] }));
    pass.dispatchWorkgroups(GROUPS);
    pass.end();
    encoder.copyBufferToBuffer(out, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    ok = lanesHold(new Uint32Array(read.getMappedRange()), lanes);
    read.unmap();
  } catch {
    ok = false;
  }
  if (await device.popErrorScope().catch(() => null)) ok = false;
  out?.destroy();
  read?.destroy();
  return ok;
}
