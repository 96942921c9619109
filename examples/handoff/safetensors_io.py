"""safetensors and kiln checkpoints on the PyTorch side, with numpy only.

Debian packages PyTorch (python3-torch) but not the `safetensors` package, so this module reads
and writes the format itself (an 8-byte little-endian header length, a JSON header with each
tensor's dtype, shape and data_offsets, then the little-endian data). With `safetensors` installed,
`safetensors.torch.load_file` / `save_file` read and write the same flat files.

kiln stores a nested checkpoint ({'model': ..., 'optimizer': ...}) as flat safetensors plus its
structure, with {"__tensor__": name} in the tensors' places, as JSON in the metadata entry
'kiln.tree'. load_tree / save_tree turn that into and out of the dict torch.save would hold, so
`optimizer.load_state_dict(ckpt['optimizer'])` works as with a torch.save checkpoint.
"""
import json
import struct

import numpy as np
import torch

DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32,
          'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}
TREE_KEY = 'kiln.tree'


def read(path):
    """-> ({name: numpy array}, {metadata key: str})"""
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop('__metadata__', {}) or {}
    body = data[8 + n:]
    arrays = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        dtype = np.dtype(DTYPES[info['dtype']]).newbyteorder('<')
        arrays[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(info['shape']).copy()
    return arrays, metadata


def write(path, arrays, metadata=None):
    """arrays: {name: numpy array}; metadata: {str: str}"""
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    header, chunks, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = metadata
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        raw = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': names[a.dtype], 'shape': list(a.shape), 'data_offsets': [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b' ' * ((8 - (8 + len(head)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(head)) + head + b''.join(chunks))


def load_flat(path):
    """A flat state dict of torch tensors, as safetensors.torch.load_file returns it."""
    arrays, _ = read(path)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def save_flat(path, state_dict):
    write(path, {k: v.detach().cpu().numpy() for k, v in state_dict.items()}, {'format': 'pt'})


def _int_keys(d):
    # JSON keys are strings; torch.optim's state is keyed by parameter index.
    return {int(k) if k.isdigit() else k: v for k, v in d.items()}


def load_tree(path):
    """A kiln checkpoint as the nested dict torch.save would hold (a flat file: its state dict)."""
    arrays, metadata = read(path)
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    if TREE_KEY not in metadata:
        return tensors

    def rebuild(v):
        if isinstance(v, dict):
            if set(v) == {'__tensor__'}:
                return tensors[v['__tensor__']]
            return _int_keys({k: rebuild(x) for k, x in v.items()})
        if isinstance(v, list):
            return [rebuild(x) for x in v]
        return v
    return rebuild(json.loads(metadata[TREE_KEY]))


def save_tree(path, tree):
    """Writes a nested dict of tensors and JSON values (e.g. {'model': sd, 'optimizer': opt.state_dict()})."""
    arrays = {}

    def flatten(v, path):
        if torch.is_tensor(v):
            name = '.'.join(path)
            arrays[name] = v.detach().cpu().numpy()
            return {'__tensor__': name}
        if isinstance(v, dict):
            return {str(k): flatten(x, path + [str(k)]) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [flatten(x, path + [str(i)]) for i, x in enumerate(v)]
        return v
    skeleton = flatten(tree, [])
    write(path, arrays, {'format': 'pt', TREE_KEY: json.dumps(skeleton)})
