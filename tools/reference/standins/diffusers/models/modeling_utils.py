"""Stand-in: ModelMixin.from_pretrained for a folder with config.json and diffusion_pytorch_model
safetensors (one file, or shards listed by diffusion_pytorch_model.safetensors.index.json)."""
import inspect
import json
import os
import struct

import torch

_DTYPES = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'F64': torch.float64,
           'I64': torch.int64, 'I32': torch.int32}


def _read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        begin, end = e['data_offsets']
        dtype = _DTYPES[e['dtype']]
        raw = bytearray(data[base + begin:base + end])
        out[name] = torch.frombuffer(raw, dtype=dtype).reshape(e['shape']) if raw else torch.empty(e['shape'], dtype=dtype)
    return out


def load_folder_weights(folder):
    index = os.path.join(folder, 'diffusion_pytorch_model.safetensors.index.json')
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        state = {}
        for shard in shards:
            state.update(_read_safetensors(os.path.join(folder, shard)))
        return state
    return _read_safetensors(os.path.join(folder, 'diffusion_pytorch_model.safetensors'))


class ModelMixin(torch.nn.Module):

    @classmethod
    def from_pretrained(cls, path, subfolder=None, torch_dtype=None, **kwargs):
        folder = os.path.join(path, subfolder) if subfolder else path
        with open(os.path.join(folder, 'config.json')) as f:
            config = json.load(f)
        params = inspect.signature(cls.__init__).parameters
        init = {k: v for k, v in config.items() if k in params}
        init.update({k: v for k, v in kwargs.items() if k in params})
        model = cls(**init)
        model.load_state_dict(load_folder_weights(folder))
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()
