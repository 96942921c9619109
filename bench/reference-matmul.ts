// Two hand-written reference WGSL matmul kernels (C = A · B, row-major f32,
// n×n with n a multiple of 64), run directly through the `webgpu` package.
// They are yardsticks for kiln's generated matmul: what a straightforward
// hand-tuned kernel reaches on the same adapter.
//
//   register-blocked: no workgroup memory; each invocation computes a 4×4 block
//     of C from vec4 loads of A and B (8×8 invocations per workgroup, a 32×32
//     tile of C per workgroup).
//   register-blocked-8x1: the same kernel in one row of 8 invocations (a 4×32
//     tile of C per workgroup): every invocation of a workgroup loads the same
//     A values (Mesa 25.0's lavapipe still loads them lane by lane, as it loads
//     every value whose address is not a constant or a push constant).
//   tiled: 16×16 invocations per workgroup compute a 64×64 tile of C; the
//     64×16 slice of A and the 16×64 slice of B are staged in workgroup memory
//     (8 KiB) each k-step, and every invocation accumulates a 4×4 block.
//   register-blocked-subgroup: one subgroup per workgroup (as many invocations
//     as the adapter's subgroupMinSize: 8 on lavapipe, 4 on SwiftShader), each
//     computing an 8×4 block of C; lane l loads A's 8 values at k0 + l and
//     subgroupBroadcast hands them to every lane (software adapters load each
//     lane's values one lane at a time, so the subgroup loads A once, not per lane).
//     Needs the 'subgroups' feature: referenceMatmul throws without it.

export type RefKernel = 'register-blocked' | 'register-blocked-8x1' | 'tiled' | 'register-blocked-subgroup';

const registerBlocked = (wy: number): string => /* wgsl */ `
struct Dims { n: u32 };
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size(8, ${wy})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = dims.n;
  let n4 = n / 4u;            // row length in vec4s
  let col4 = gid.x;           // which vec4 column of C
  let row = gid.y * 4u;       // first of 4 rows of C
  if (col4 >= n4 || row >= n) { return; }
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k4 = 0u; k4 < n4; k4 = k4 + 1u) {
    // A[row+i][4k4 .. 4k4+3]
    let a0 = A[(row + 0u) * n4 + k4];
    let a1 = A[(row + 1u) * n4 + k4];
    let a2 = A[(row + 2u) * n4 + k4];
    let a3 = A[(row + 3u) * n4 + k4];
    // B[4k4+j][4col4 .. 4col4+3]
    let k = k4 * 4u;
    let b0 = B[(k + 0u) * n4 + col4];
    let b1 = B[(k + 1u) * n4 + col4];
    let b2 = B[(k + 2u) * n4 + col4];
    let b3 = B[(k + 3u) * n4 + col4];
    acc0 = acc0 + a0.x * b0 + a0.y * b1 + a0.z * b2 + a0.w * b3;
    acc1 = acc1 + a1.x * b0 + a1.y * b1 + a1.z * b2 + a1.w * b3;
    acc2 = acc2 + a2.x * b0 + a2.y * b1 + a2.z * b2 + a2.w * b3;
    acc3 = acc3 + a3.x * b0 + a3.y * b1 + a3.z * b2 + a3.w * b3;
  }
  C[(row + 0u) * n4 + col4] = acc0;
  C[(row + 1u) * n4 + col4] = acc1;
  C[(row + 2u) * n4 + col4] = acc2;
  C[(row + 3u) * n4 + col4] = acc3;
}
`;

const TILED = /* wgsl */ `
struct Dims { n: u32 };
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> dims: Dims;

const TM = 64u;   // rows of the C tile
const TN = 64u;   // columns of the C tile
const TK = 16u;   // k-slice staged per step
var<workgroup> As: array<f32, 1024>;          // [TK][TM]: A tile stored transposed
var<workgroup> Bs: array<vec4<f32>, 256>;     // [TK][TN/4]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = dims.n;
  let n4 = n / 4u;
  let tx = lid.x;               // 0..15: vec4 column inside the tile
  let ty = lid.y;               // 0..15: group of 4 rows inside the tile
  let t = ty * 16u + tx;        // 0..255
  let row0 = wg.y * TM;
  let col0 = wg.x * TN;
  var acc: array<vec4<f32>, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) { acc[i] = vec4<f32>(0.0); }
  for (var k0 = 0u; k0 < n; k0 = k0 + TK) {
    // A tile: 64 rows × 16 k = 1024 floats, 4 per invocation.
    for (var i = 0u; i < 4u; i = i + 1u) {
      let e = t * 4u + i;       // 0..1023
      let r = e / TK;
      let kk = e % TK;
      As[kk * TM + r] = A[(row0 + r) * n + k0 + kk];
    }
    // B tile: 16 k × 16 vec4 = 256 vec4s, 1 per invocation.
    let bk = t / 16u;
    let bc = t % 16u;
    Bs[bk * 16u + bc] = B[(k0 + bk) * n4 + col0 / 4u + bc];
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk = kk + 1u) {
      let b = Bs[kk * 16u + tx];
      let base = kk * TM + ty * 4u;
      acc[0] = acc[0] + As[base + 0u] * b;
      acc[1] = acc[1] + As[base + 1u] * b;
      acc[2] = acc[2] + As[base + 2u] * b;
      acc[3] = acc[3] + As[base + 3u] * b;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    C[(row0 + ty * 4u + i) * n4 + col0 / 4u + tx] = acc[i];
  }
}
`;

// Written out (registers, not arrays: SwiftShader keeps a private array in memory) for `lanes` lanes:
// the k steps of one round are unrolled (subgroupBroadcast takes a constant lane).
const ROWS8 = [0, 1, 2, 3, 4, 5, 6, 7];
const registerBlockedSubgroup = (lanes: number): string => /* wgsl */ `
enable subgroups;
struct Dims { n: u32 };
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size(${lanes}, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n = dims.n;
  let n4 = n / 4u;
  let col4 = gid.x;           // which vec4 column of C
  let row = wg.y * 8u;        // first of 8 rows of C
${ROWS8.map((i) => `  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  for (var k0 = 0u; k0 < n; k0 = k0 + ${lanes}u) {
    // this lane's k step of rows row .. row + 7
${ROWS8.map((i) => `    let a${i} = A[(row + ${i}u) * n + k0 + lane];`).join('\n')}
${Array.from({ length: lanes }, (_, q) => `    {
      let b = B[(k0 + ${q}u) * n4 + col4];
${ROWS8.map((i) => `      acc${i} = acc${i} + subgroupBroadcast(a${i}, ${q}u) * b;`).join('\n')}
    }`).join('\n')}
  }
${ROWS8.map((i) => `  C[(row + ${i}u) * n4 + col4] = acc${i};`).join('\n')}
}
`;

/** A reference kernel's source; `lanes`: the adapter's subgroupMinSize (the subgroup kernel only). */
export const referenceWgsl = (kind: RefKernel, lanes: number): string =>
  kind === 'register-blocked' ? registerBlocked(8) : kind === 'register-blocked-8x1' ? registerBlocked(1) : kind === 'tiled' ? TILED : registerBlockedSubgroup(lanes);

export interface RefMatmul {
  /** Runs one matmul and waits for the queue. */
  run(): Promise<void>;
  /** Runs once and reads C back. */
  result(): Promise<Float32Array>;
  destroy(): void;
}

/** `lanes`: the adapter's subgroupMinSize, for the subgroup kernel (whose device must have the 'subgroups' feature). */
export async function referenceMatmul(device: GPUDevice, kind: RefKernel, n: number, a: Float32Array, b: Float32Array, lanes = 0): Promise<RefMatmul> {
  if (n % 64 !== 0) throw new Error(`reference matmul needs n % 64 == 0, got ${n}`);
  if (kind === 'register-blocked-subgroup' && !(device.features.has('subgroups') && (lanes === 4 || lanes === 8 || lanes === 16 || lanes === 32))) {
    throw new Error(`the subgroup reference kernel needs the 'subgroups' feature and 4 to 32 lanes (device: ${device.features.has('subgroups') ? `${lanes} lanes` : 'no subgroups'})`);
  }
  const bytes = n * n * 4;
  const mk = (usage: number, data?: Float32Array) => {
    const buf = device.createBuffer({ size: bytes, usage, mappedAtCreation: !!data });
    if (data) {
      new Float32Array(buf.getMappedRange()).set(data);
      buf.unmap();
    }
    return buf;
  };
  const A = mk(GPUBufferUsage.STORAGE, a);
  const B = mk(GPUBufferUsage.STORAGE, b);
  const C = mk(GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const read = mk(GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  const dims = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(dims, 0, new Uint32Array([n, 0, 0, 0]));

  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: referenceWgsl(kind, lanes) });
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const err = await device.popErrorScope();
  if (err) throw new Error(`reference ${kind} kernel: ${err.message}`);
  const bind = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [A, B, C, dims].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const groups: [number, number] = kind === 'tiled' ? [n / 64, n / 64] : kind === 'register-blocked' ? [n / 4 / 8, n / 4 / 8] : kind === 'register-blocked-8x1' ? [n / 4 / 8, n / 4] : [n / 4 / lanes, n / 8];

  const encode = (withCopy: boolean) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(groups[0], groups[1]);
    pass.end();
    if (withCopy) enc.copyBufferToBuffer(C, 0, read, 0, bytes);
    device.queue.submit([enc.finish()]);
  };
  return {
    async run() {
      encode(false);
      await device.queue.onSubmittedWorkDone();
    },
    async result() {
      encode(true);
      await read.mapAsync(GPUMapMode.READ);
      const out = new Float32Array(read.getMappedRange().slice(0));
      read.unmap();
      return out;
    },
    destroy() {
      for (const buf of [A, B, C, read, dims]) buf.destroy();
    },
  };
}

/** Max relative error of `c` against float64 dot products at `samples` spots. */
export function checkMatmul(c: ArrayLike<number>, a: Float32Array, b: Float32Array, n: number, samples = 64): number {
  let worst = 0;
  for (let s = 0; s < samples; s++) {
    const i = (s * 7919) % n;
    const j = (s * 104729 + 13) % n;
    let ref = 0;
    let mag = 0;
    for (let k = 0; k < n; k++) {
      ref += a[i * n + k]! * b[k * n + j]!;
      mag += Math.abs(a[i * n + k]! * b[k * n + j]!);
    }
    worst = Math.max(worst, Math.abs(c[i * n + j]! - ref) / Math.max(mag, 1e-30));
  }
  return worst;
}
