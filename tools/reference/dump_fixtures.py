#!/usr/bin/env python3
"""Dump reference fixtures for `wan verify` from the OFFICIAL Wan2.2 code and YOUR checkpoint.

Runs the official PyTorch modules (imported from an official Wan2.2 checkout, not copied) on small
inputs with the real weights, and writes fixture folders in this project's format (case.json +
io.safetensors, see test/fixtures/README.md), with the same kinds, tensor names and semantics as the
bundled tiny fixtures, so `npx wan verify OUT` checks the engine against your PyTorch at full size.

usage:
  python3 tools/reference/dump_fixtures.py --wan-repo Wan2.2 --ckpt_dir Wan2.2-TI2V-5B --task ti2v-5B \\
      --out fixtures-ti2v [--kinds dit,t5,vae_decode,vae_encode,pipeline] [--device cuda] [--dtype float32]
  npx wan verify fixtures-ti2v

Kinds (folders written):
  dit         WanModel forward on a random latent and context (dit.<task>[.high|.low])
  t5          the umT5 encoder on the prompt (t5)
  vae_decode  the task's VAE decoding a random latent (vae2_1_decode_video / vae2_2_decode_video)
  vae_encode  the task's VAE encoding a smooth random video (vae2_1_encode_video / vae2_2_encode_video)
  pipeline    the task's official generate() end to end (pipeline.<task>), noise from the CPU generator

See tools/reference/README.md for what each fixture holds, the tolerances and the stand-ins.
"""
import argparse
import contextlib
import copy
import importlib
import json
import math
import os
import pickle
import struct
import sys
import types
import zipfile

sys.dont_write_bytecode = True  # no __pycache__ inside the official checkout or the stand-ins
HERE = os.path.dirname(os.path.abspath(__file__))
STANDINS = os.path.join(HERE, 'standins')
KINDS = ('dit', 't5', 'vae_decode', 'vae_encode', 'pipeline')

# The tasks: the official pipeline class, its VAE, and the DiT folders (experts) in the checkpoint.
TASKS = {
    't2v-A14B': dict(module='wan.text2video', cls='WanT2V', vae='2.1', experts=('high', 'low'), short='t2v'),
    'i2v-A14B': dict(module='wan.image2video', cls='WanI2V', vae='2.1', experts=('high', 'low'), short='i2v'),
    'ti2v-5B': dict(module='wan.textimage2video', cls='WanTI2V', vae='2.2', experts=(None,), short='ti2v'),
}

# Tolerances written into case.json ("tolerances": check name -> bound; "*" = every rel-L2 check
# without its own entry; "frames" = max |diff| of the uint8 frames). Rel L2 = ||ours - ref|| / ||ref||.
# float32: the reference computes in float32 with the weights the engine stores (DiT and umT5 rounded
# to bf16, VAE float32) and TF32 off, so only the summation order differs; the bundled tiny fixtures
# see ~6e-7 (DiT) and ~2e-6 (pipeline video) from that, and the error grows with the depth (40 DiT
# blocks, 24 umT5 blocks), the dot-product length (up to 13824) and, in the pipeline, with every
# sampling step and the guidance scale (which multiplies the cond - uncond difference). The bounds
# leave 10x or more over that estimate while a semantic slip (a wrong mask, RoPE split, cache frame,
# timestep) gives 1e-2 and more. bfloat16: the reference runs as the official GPU code (bf16 autocast,
# bf16 umT5, flash attention); it is then only a sanity bound (bf16 itself differs by ~1e-2; on the
# tiny checkpoints on an H200: DiT 6e-3, umT5 1.1e-2, pipeline video 3.5e-2, frames up to 59 levels).
# The VAE runs in float32 with TF32 off in both modes (no_tf32), hence one bound.
TOLERANCES = {
    'float32': {
        'dit': {'*': 1e-3},
        't5': {'*': 1e-3},
        'vae': {'*': 5e-4},
        'pipeline': {'context': 1e-3, 'context_null': 1e-3, '*': 1e-2, 'frames': 8},
    },
    'bfloat16': {
        'dit': {'*': 5e-2},
        't5': {'*': 5e-2},
        'vae': {'*': 5e-4},
        'pipeline': {'context': 5e-2, 'context_null': 5e-2, '*': 2e-1, 'frames': 128},
    },
}

# ---------------------------------------------------------------------------------------------
# Writing fixtures (no torch needed: tensors arrive as (dtype, shape, little-endian bytes))

ST_SIZES = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'U8': 1}


def write_safetensors(path, entries, metadata=None):
    """entries: name -> (dtype, shape, bytes). Header padded with spaces to 8 bytes, tensors in name order."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(entries):
        dtype, shape, data = entries[name]
        if dtype not in ST_SIZES:
            raise ValueError(f'{name}: unsupported dtype {dtype}')
        if len(data) != math.prod(shape) * ST_SIZES[dtype]:
            raise ValueError(f'{name}: {len(data)} bytes for shape {list(shape)} x {dtype}')
        header[name] = {'dtype': dtype, 'shape': [int(s) for s in shape], 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def write_fixture(folder, kind, config, inputs, outputs, intermediates, notes, reference, weights=None,
                  tolerances=None):
    """inputs / outputs / intermediates: name -> (dtype, shape, bytes), stored as in.* / out.* / mid.*."""
    os.makedirs(folder, exist_ok=True)
    entries = {}
    for prefix, group in (('in', inputs), ('out', outputs), ('mid', intermediates)):
        for name, value in group.items():
            entries[f'{prefix}.{name}'] = value
    write_safetensors(os.path.join(folder, 'io.safetensors'), entries)
    spec = {'kind': kind, 'config': config, 'weights': weights, 'inputs': list(inputs), 'outputs': list(outputs),
            'intermediates': list(intermediates), 'notes': notes, 'reference': reference}
    if tolerances:
        spec['tolerances'] = tolerances
    spec['shapes'] = {n: list(v[1]) for g in (inputs, outputs, intermediates) for n, v in g.items()}
    with open(os.path.join(folder, 'case.json'), 'w', encoding='utf-8') as f:
        json.dump(spec, f, indent=1, ensure_ascii=False)
        f.write('\n')


# ---------------------------------------------------------------------------------------------
# Checkpoint shapes without loading the weights (to size the models from the files)

def safetensors_shapes(path):
    """name -> shape from a .safetensors file or a .safetensors.index.json (headers only)."""
    if path.endswith('.index.json'):
        with open(path) as f:
            shards = sorted(set(json.load(f)['weight_map'].values()))
        out = {}
        for shard in shards:
            out.update(safetensors_shapes(os.path.join(os.path.dirname(path), shard)))
        return out
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
    return {k: v['shape'] for k, v in header.items() if k != '__metadata__'}


class _ShapeUnpickler(pickle.Unpickler):
    """Reads a torch.save state dict's pickle, turning each tensor into its shape (no data read)."""

    def find_class(self, module, name):
        if name == '_rebuild_tensor_v2':
            return lambda storage, offset, size, *rest: list(size)
        if module == 'collections' and name == 'OrderedDict':
            import collections
            return collections.OrderedDict
        if module.startswith('torch'):
            return lambda *a, **k: None
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return None


def pth_shapes(path):
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith('data.pkl'))
        return dict(_ShapeUnpickler(z.open(pkl)).load())


def dit_folder(ckpt_dir, expert):
    return os.path.join(ckpt_dir, f'{expert}_noise_model') if expert else ckpt_dir


def dit_weights_file(folder):
    for name in ('diffusion_pytorch_model.safetensors.index.json', 'diffusion_pytorch_model.safetensors'):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    sys.exit(f'{folder}: no diffusion_pytorch_model.safetensors(.index.json)')


def dit_overrides(folder):
    """WanModel's text_dim is not in config.json (ignore_for_config): the official 4096 is the default;
    reduced checkpoints (the project's tiny fixtures) pass theirs, read from text_embedding.0.weight."""
    text_dim = safetensors_shapes(dit_weights_file(folder))['text_embedding.0.weight'][1]
    return {} if text_dim == 4096 else {'text_dim': text_dim}


# ---------------------------------------------------------------------------------------------
# The official code

def import_official(repo):
    """Imports the official modules without running wan/__init__.py (which also imports the speech
    and animate pipelines and their extra dependencies). Returns the list of stand-ins in use."""
    import torch
    import torch.nn.functional as F
    wan_dir = os.path.join(repo, 'wan')
    if not os.path.isfile(os.path.join(wan_dir, 'modules', 'model.py')):
        sys.exit(f'{repo}: no wan/modules/model.py (--wan-repo must be an official Wan2.2 checkout)')
    sys.path.insert(0, os.path.abspath(repo))
    sys.path.append(STANDINS)  # last: an installed package always wins over its stand-in
    pkg = types.ModuleType('wan')
    pkg.__path__ = [wan_dir]
    pkg.__file__ = os.path.join(wan_dir, '__init__.py')
    sys.modules['wan'] = pkg
    if not hasattr(F, 'scaled_dot_product_attention'):
        # torch < 2.0: the VAE's attention call (no mask, no dropout, scale 1/sqrt(d)).
        F.scaled_dot_product_attention = lambda q, k, v, **kw: torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, -1) @ v
    if not torch.cuda.is_available():
        # wan/modules/t5.py evaluates torch.cuda.current_device() as a default argument at import.
        torch.cuda.current_device = lambda: 0
    try:
        import torch.distributed.fsdp  # noqa: F401 (wan/distributed/fsdp.py needs it)
    except Exception:
        # torch 1.13 under Python 3.11 fails to import FSDP (a dataclass error). The pipelines import
        # shard_model from wan.distributed.fsdp but call it only with FSDP on, which is never used here.
        def shard_model(*a, **k):
            raise RuntimeError('FSDP is not available in this torch')
        fsdp = types.ModuleType('wan.distributed.fsdp')
        fsdp.shard_model = shard_model
        sys.modules['wan.distributed.fsdp'] = fsdp
    for name in ('wan.modules.model', 'wan.modules.t5', 'wan.modules.vae2_1', 'wan.modules.vae2_2', 'wan.configs'):
        importlib.import_module(name)
    return sorted({m.split('.')[0] for m, mod in list(sys.modules.items())
                   if (getattr(mod, '__file__', None) or '').startswith(STANDINS)})


def reference_attention(float32):
    """Stands in for wan.modules.attention.flash_attention (flash_attn is CUDA-only and computes in
    bf16): softmax(q k^T * scale) v per head, keys at or beyond k_lens masked, every query row
    computed, as flash_attn_varlen_func with q_lens=None. float32=False rounds q, k, v and the output
    to bf16 like flash attention."""
    import torch

    def attention(q, k, v, q_lens=None, k_lens=None, dropout_p=0., softmax_scale=None, q_scale=None,
                  causal=False, window_size=(-1, -1), deterministic=False, dtype=torch.bfloat16, version=None):
        assert q_lens is None and not causal and tuple(window_size) == (-1, -1), 'not used by WanModel'
        out_dtype = q.dtype
        cast = (lambda x: x.float()) if float32 else (lambda x: x.to(torch.bfloat16).float())
        q, k, v = cast(q), cast(k), cast(v)
        if q_scale is not None:
            q = q * q_scale
        scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
        lk = k.shape[1]
        out = torch.empty_like(q[..., :1].expand(*q.shape[:3], v.shape[-1])).contiguous()
        for h0 in range(0, q.shape[2], 8):  # 8 heads at a time bounds the logits' memory
            hs = slice(h0, h0 + 8)
            logits = torch.einsum('blhd,bshd->bhls', q[:, :, hs], k[:, :, hs]) * scale
            if k_lens is not None:
                masked = torch.arange(lk, device=q.device)[None, :] >= k_lens.to(q.device)[:, None]
                logits = logits.masked_fill(masked[:, None, None, :], float('-inf'))
            out[:, :, hs] = torch.einsum('bhls,bshd->blhd', torch.softmax(logits, -1), v[:, :, hs])
        return (out if float32 else out.to(torch.bfloat16)).to(out_dtype)

    return attention


def install_attention(float32):
    """float32: always the stand-in (the official flash_attention casts to bf16). bfloat16: the
    official flash attention when flash_attn is importable, else the stand-in rounding to bf16."""
    model_mod = sys.modules['wan.modules.model']
    attn_mod = importlib.import_module('wan.modules.attention')
    official = attn_mod.FLASH_ATTN_2_AVAILABLE or attn_mod.FLASH_ATTN_3_AVAILABLE
    if float32 or not official:
        model_mod.flash_attention = reference_attention(float32)
        return 'reference attention (float32 softmax, k_lens mask)' + ('' if float32 else ' on bf16-rounded q, k, v')
    return 'official flash attention'


def t5_builder(checkpoint):
    """Replaces wan.modules.t5.umt5_xxl: the official T5Encoder with the sizes of the checkpoint (the
    umt5_xxl sizes for the official file; reduced ones for a tiny checkpoint), built without the
    torch >= 2 device context _t5 uses."""
    t5mod = sys.modules['wan.modules.t5']
    shapes = pth_shapes(checkpoint)

    def build(encoder_only=True, return_tokenizer=False, dtype=None, device='cpu', **kwargs):
        vocab, dim = shapes['token_embedding.weight']
        buckets, heads = shapes['blocks.0.pos_embedding.embedding.weight']
        layers = len({k.split('.')[1] for k in shapes if k.startswith('blocks.')})
        model = t5mod.T5Encoder(vocab=vocab, dim=dim, dim_attn=shapes['blocks.0.attn.q.weight'][0],
                                dim_ffn=shapes['blocks.0.ffn.fc1.weight'][0],
                                num_heads=heads, num_layers=layers, num_buckets=buckets, shared_pos=False, dropout=0.1)
        return model.to(dtype=dtype, device=device)

    return build


def vae_builder(version):
    """Replaces wan.modules.vae2_x._video_vae: the official WanVAE_ (widths from the checkpoint: the
    official ones for the official file), built on the CPU and loaded with load_state_dict (the
    official meta-device build with assign=True needs torch >= 2.1; the result is the same)."""
    import torch
    mod = sys.modules['wan.modules.vae2_1' if version == '2.1' else 'wan.modules.vae2_2']

    def build(pretrained_path=None, z_dim=None, device='cpu', **kwargs):
        shapes = pth_shapes(pretrained_path)
        cfg = dict(dim=96, z_dim=z_dim, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                   temperal_downsample=[False, True, True], dropout=0.0)
        cfg.update(kwargs)
        cfg['dim'] = shapes['encoder.conv1.weight'][0]
        if version == '2.2':
            cfg['dec_dim'] = shapes['decoder.conv1.weight'][0] // cfg['dim_mult'][-1]
        model = mod.WanVAE_(**cfg)
        model.load_state_dict(torch.load(pretrained_path, map_location='cpu'))
        return model.to(device)

    return build


@contextlib.contextmanager
def patched(owner, name, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def round_to_bf16(module):
    """The engine stores DiT and umT5 weights as bf16 (round to nearest even): the reference computes
    with the same values (a no-op for weights stored in bf16)."""
    import torch
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.copy_(p.to(torch.bfloat16).to(p.dtype))


def task_config(args):
    """The official task config; text_len follows the DiT's config.json (512 in the official
    checkpoints, as the task config says; the tiny fixture checkpoints use less)."""
    cfg = copy.deepcopy(importlib.import_module('wan.configs').WAN_CONFIGS[args.task])
    with open(os.path.join(dit_folder(args.ckpt_dir, TASKS[args.task]['experts'][0]), 'config.json')) as f:
        cfg.text_len = json.load(f).get('text_len', cfg.text_len)
    return cfg


# ---------------------------------------------------------------------------------------------
# Tensors to fixture entries

def entry(t, dtype=None):
    import torch
    t = t.detach().to('cpu').contiguous()
    if dtype == 'I64' or (dtype is None and not t.is_floating_point()):
        t, name = t.to(torch.int64), 'I64'
    elif dtype == 'F64':
        t, name = t.to(torch.float64), 'F64'
    else:
        t, name = t.to(torch.float32), 'F32'
    assert sys.byteorder == 'little'
    return (name, list(t.shape), t.numpy().tobytes())


class Hooks:
    """Forward hooks recording module outputs (or inputs) under fixture names."""

    def __init__(self):
        self.values, self.handles = {}, []

    def output(self, module, name, fn=lambda x: x):
        self.handles.append(module.register_forward_hook(lambda m, args, out: self.values.__setitem__(name, fn(out).detach().float().cpu())))

    def input(self, module, name, fn=lambda x: x):
        self.handles.append(module.register_forward_pre_hook(lambda m, args: self.values.__setitem__(name, fn(args[0]).detach().float().cpu())))

    def remove(self):
        for h in self.handles:
            h.remove()


def reference_text(args, standins, attention=None):
    import torch
    parts = [f'official Wan2.2 code ({os.path.abspath(args.wan_repo)}) under torch {torch.__version__}, '
             f'{args.device}, {args.dtype}']
    if args.dtype == 'float32':
        parts.append('TF32 off, DiT/umT5 weights rounded to bf16 as the engine stores them')
    if attention:
        parts.append(attention)
    if standins:
        parts.append('stand-ins for missing packages: ' + ', '.join(standins) + ' (tools/reference/standins)')
    return '; '.join(parts)


def autocast(args):
    import torch
    if args.dtype == 'bfloat16' and args.device.startswith('cuda'):
        return torch.amp.autocast('cuda', dtype=torch.bfloat16)
    return contextlib.nullcontext()


def tolerances(args, kind):
    return None if args.tolerances == 'builtin' else TOLERANCES[args.dtype][kind]


# ---------------------------------------------------------------------------------------------
# dit

def dump_dit(args, out, standins, attention):
    import torch
    model_mod = sys.modules['wan.modules.model']
    spec = TASKS[args.task]
    experts = spec['experts'] if args.expert == 'both' or spec['experts'] == (None,) else (args.expert,)
    for expert in experts:
        folder = dit_folder(args.ckpt_dir, expert)
        model = model_mod.WanModel.from_pretrained(folder, **dit_overrides(folder)).eval().requires_grad_(False)
        round_to_bf16(model)
        model.to(args.device)
        with open(os.path.join(folder, 'config.json')) as f:
            config = json.load(f)
        f_, h, w = args.dit_latent
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(model.out_dim, f_, h, w, generator=gen)
        context = torch.randn(args.dit_context_len, model.text_dim, generator=gen)
        grid = (f_, h // model.patch_size[1], w // model.patch_size[2])
        tokens = math.prod(grid)
        seq_len = tokens + args.dit_seq_pad
        timestep = args.timestep if args.timestep is not None else {'high': 950, 'low': 500, None: 700}[expert]
        y = None
        if model.model_type == 'i2v':  # mask (first frame) + an image latent, as image2video builds y
            mask = torch.zeros(4, f_, h, w)
            mask[:, 0] = 1
            y = torch.cat([mask, torch.randn(model.in_dim - model.out_dim - 4, f_, h, w, generator=gen)])
        if model.model_type == 'ti2v':  # per-token timesteps, 0 on the first latent frame (image mode)
            t = torch.full((1, seq_len), float(timestep))
            t[0, :grid[1] * grid[2]] = 0
        else:
            t = torch.tensor([timestep], dtype=torch.long)
        hooks = Hooks()
        hooks.output(model.patch_embedding, 'patch_tokens', lambda o: o.flatten(2).transpose(1, 2))
        hooks.input(model.time_embedding, 'sin_emb')
        hooks.output(model.time_embedding, 'e')
        hooks.output(model.time_projection, 'e0', lambda o: o.unflatten(2, (6, model.dim)))
        hooks.input(model.text_embedding, 'context_padded')
        hooks.output(model.text_embedding, 'context_emb')
        hooks.input(model.blocks[0], 'x_tokens')
        n = len(model.blocks)
        for i in sorted({0, n // 2, n - 1}):
            hooks.output(model.blocks[i], f'block.{i}')
        hooks.output(model.head, 'head')
        with torch.no_grad(), autocast(args):
            dev = lambda v: v.to(args.device)
            result = model([dev(x)], t=dev(t), context=[dev(context)], seq_len=seq_len,
                           y=[dev(y)] if y is not None else None)[0]
        hooks.remove()
        name = f'dit.{spec["short"]}' + (f'.{expert}' if expert else '')
        target = os.path.join(out, name)
        os.makedirs(target, exist_ok=True)
        # config.json beside case.json (the dit kind reads it there); the weights stay in the checkpoint.
        with open(os.path.join(target, 'config.json'), 'w') as f:
            json.dump(config, f, indent=1)
        weights = [os.path.relpath(dit_weights_file(folder), target), 'config.json']
        inputs = {'x': entry(x), 'context': entry(context), 't': entry(t), 'seq_len': entry(torch.tensor([seq_len]))}
        if y is not None:
            inputs['y'] = entry(y)
        mids = {k: entry(v) for k, v in hooks.values.items()}
        cfg = dict(config, text_dim=model.text_dim, seq_len=seq_len, real_tokens=tokens, grid_sizes=list(grid),
                   context_len=args.dit_context_len, timestep=timestep, expert=expert, seed=args.seed)
        notes = ('WanModel.forward([x], t, [context], seq_len' + (', y=[y]' if y is not None else '') + ')[0] of the '
                 'official code on the checkpoint\'s weights (case.json weights: relative paths into the checkpoint); '
                 'x and context are seeded random (torch CPU generator, config.seed); t is int64 [1] (t2v/i2v) or the '
                 'per-token float vector [1, seq_len] with 0 on the first latent frame (ti2v). Intermediates as in '
                 'the bundled dit.* fixtures; block.<i> for the first, middle and last block.')
        write_fixture(target, 'dit', cfg, inputs, {'out': entry(result)}, mids, notes,
                      reference_text(args, standins, attention), weights, tolerances(args, 'dit'))
        print(f'{name}: out {list(result.shape)}, {len(mids)} intermediates', flush=True)
        del model


# ---------------------------------------------------------------------------------------------
# t5

def dump_t5(args, out, standins, cfg):
    import torch
    t5mod = sys.modules['wan.modules.t5']
    checkpoint = os.path.join(args.ckpt_dir, cfg.t5_checkpoint)
    with patched(t5mod, 'umt5_xxl', t5_builder(checkpoint)):
        enc = t5mod.T5EncoderModel(text_len=cfg.text_len, dtype=torch.float32 if args.dtype == 'float32' else cfg.t5_dtype,
                                   device=torch.device('cpu'), checkpoint_path=checkpoint,
                                   tokenizer_path=os.path.join(args.ckpt_dir, cfg.t5_tokenizer))
    round_to_bf16(enc.model)
    enc.model.to(args.device)
    prompts = [args.prompt]
    ids, mask = enc.tokenizer(prompts, return_mask=True, add_special_tokens=True)
    hooks = Hooks()
    hooks.output(enc.model.token_embedding, 'embed')
    n = len(enc.model.blocks)
    for i in sorted({0, n - 1}):
        hooks.output(enc.model.blocks[i], f'block.{i}')
    hooks.output(enc.model, 'last_hidden')
    with torch.no_grad():
        contexts = enc(prompts, torch.device(args.device))
    hooks.remove()
    mids = {k: entry(v) for k, v in hooks.values.items() if k != 'last_hidden'}
    outputs = {'last_hidden': entry(hooks.values['last_hidden'])}
    outputs.update({f'context.{b}': entry(c) for b, c in enumerate(contexts)})
    m = enc.model
    config = dict(vocab=m.token_embedding.num_embeddings, dim=m.dim, dim_attn=m.dim_attn, dim_ffn=m.dim_ffn,
                  num_heads=m.num_heads, num_layers=m.num_layers, num_buckets=m.num_buckets, text_len=cfg.text_len, prompts=prompts, seq_lens=[int(c.shape[0]) for c in contexts])
    target = os.path.join(out, 't5')
    os.makedirs(target, exist_ok=True)
    notes = ('T5EncoderModel of the official code on the checkpoint\'s umT5: in.ids / in.mask = its tokenizer on '
             'config.prompts (text_len, eos, padding); out.last_hidden = encoder output [B, text_len, dim]; '
             'out.context.<b> = what T5EncoderModel returns (trimmed to the mask); mid.embed, mid.block.<i> '
             '(first and last block outputs).')
    write_fixture(target, 't5', config, {'ids': entry(ids), 'mask': entry(mask)}, outputs, mids, notes,
                  reference_text(args, standins), [os.path.relpath(checkpoint, target)], tolerances(args, 't5'))
    print(f't5: context {[list(c.shape) for c in contexts]}', flush=True)


# ---------------------------------------------------------------------------------------------
# VAE

def make_vae(args, cfg):
    import torch
    version = TASKS[args.task]['vae']
    mod = sys.modules['wan.modules.vae2_1' if version == '2.1' else 'wan.modules.vae2_2']
    path = os.path.join(args.ckpt_dir, cfg.vae_checkpoint)
    with patched(mod, '_video_vae', vae_builder(version)):
        cls = mod.Wan2_1_VAE if version == '2.1' else mod.Wan2_2_VAE
        vae = cls(vae_pth=path, device=torch.device(args.device))
    return version, vae, path


@contextlib.contextmanager
def no_tf32():
    """TF32 off while the VAE runs, whatever --dtype: the official VAE is a float32 model in every
    mode, but cuDNN's default (torch.backends.cudnn.allow_tf32 = True) runs its convolutions in TF32
    (10-bit mantissa), which moves a VAE output by ~1e-3 rel L2 (measured on an H200: 7e-4 to 1.2e-3
    against the engine's float32, vs 1e-6 with TF32 off)."""
    import torch
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def dump_vae(args, out, standins, cfg, op):
    with no_tf32():
        _dump_vae(args, out, standins, cfg, op)


def _dump_vae(args, out, standins, cfg, op):
    import torch
    version, vae, path = make_vae(args, cfg)
    model = vae.model
    hooks = Hooks()
    gen = torch.Generator().manual_seed(args.seed)
    t_lat, h_lat, w_lat = args.vae_latent
    stride = cfg.vae_stride
    if op == 'decode':
        x = torch.randn(model.z_dim, t_lat, h_lat, w_lat, generator=gen)
        hooks.input(model.conv2, 'z_unnormalized')
        hooks.output(model.conv2, 'dec_conv2_out')
        unclamped = {}
        official_decode = model.decode

        def decode(z, scale):
            out = official_decode(z, scale)
            # a copy: the caller clamps the result in place (clamp_), which would reach a CPU alias
            unclamped['v'] = out.detach().float().cpu().clone()
            return out

        with torch.no_grad(), patched(model, 'decode', decode):
            result = vae.decode([x.to(args.device)])[0]
        hooks.values['dec_out_unclamped'] = unclamped['v']
        io_in, io_out = {'latent': entry(x)}, {'video': entry(result)}
    else:
        frames = 1 + 4 * (t_lat - 1)
        size = (frames, h_lat * stride[1], w_lat * stride[2])
        # A smooth random video in [-1, 1]: coarse noise upsampled (closer to images than white noise).
        coarse = torch.randn(1, 3, frames, max(2, size[1] // 16), max(2, size[2] // 16), generator=gen)
        x = torch.tanh(torch.nn.functional.interpolate(coarse, size=size, mode='trilinear', align_corners=False))[0]
        hooks.input(model.conv1, 'enc_out')
        hooks.output(model.conv1, 'enc_conv1_out')
        hooks.output(model.conv1, 'mu_unnormalized', lambda o: o.chunk(2, dim=1)[0])
        hooks.output(model.conv1, 'log_var', lambda o: o.chunk(2, dim=1)[1])
        with torch.no_grad():
            result = vae.encode([x.to(args.device)])[0]
        io_in, io_out = {'video': entry(x)}, {'latent': entry(result)}
    name = f'vae{version.replace(".", "_")}_{op}_video'
    target = os.path.join(out, name)
    os.makedirs(target, exist_ok=True)
    config = {'version': version, 'op': op, 'input_shape': list(x.shape), 'output_shape': list(result.shape),
              'seed': args.seed}
    notes = (f'Wan{version} VAE {op} of the official code on the checkpoint\'s VAE (.pth, float32): '
             + ('in.latent (seeded normal, already normalised) -> out.video [3, 1+4(T\'-1), H, W] clamped to [-1, 1]; '
                'mid.z_unnormalized, mid.dec_conv2_out, mid.dec_out_unclamped as in the bundled vae*_decode_video.'
                if op == 'decode' else
                'in.video (smooth seeded random video in [-1, 1]) -> out.latent (normalised); mid.enc_out, '
                'mid.enc_conv1_out, mid.mu_unnormalized, mid.log_var as in the bundled vae*_encode_video.'))
    write_fixture(target, f'vae{version.replace(".", "_")}', config, io_in, io_out,
                  {k: entry(v) for k, v in hooks.values.items()}, notes, reference_text(args, standins) + ('' if args.dtype == 'float32' else '; VAE in float32, TF32 off'),
                  [os.path.relpath(path, target)], tolerances(args, 'vae'))
    hooks.remove()
    print(f'{name}: {list(x.shape)} -> {list(result.shape)}', flush=True)


# ---------------------------------------------------------------------------------------------
# pipeline

class TorchInPipeline:
    """What the official pipeline module sees as `torch` while it runs: the real torch, except that
    its generator is the CPU one (the engine reproduces torch's CPU stream; the official code draws
    on the GPU's), cuda devices map to --device, and, in float32 mode, its bf16 autocast is off."""

    def __init__(self, torch, device, float32, record):
        self._torch, self._device, self._float32, self._record = torch, device, float32, record
        real = torch

        class Amp:
            @staticmethod
            def autocast(device_type, dtype=None, enabled=True, **kw):
                on = enabled and not float32 and real.device(device).type == 'cuda'
                return real.amp.autocast(device_type, dtype=dtype, enabled=on, **kw) if on else contextlib.nullcontext()

        self.amp = Amp

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def device(self, spec, *args):
        d = self._torch.device(spec, *args)
        return self._torch.device(self._device) if d.type == 'cuda' else d

    def Generator(self, device=None):
        return self._torch.Generator()

    def randn(self, *size, generator=None, device=None, dtype=None, **kw):
        x = self._torch.randn(*size, generator=generator, dtype=dtype)
        self._record('noise', x)
        return x.to(device) if device is not None else x


class TextEncoderTap:
    """Wraps T5EncoderModel: records ids, mask and the context of each call (prompt, then negative)."""

    def __init__(self, enc, rec):
        self._enc, self._rec = enc, rec

    def __getattr__(self, name):
        return getattr(self._enc, name)

    def __call__(self, texts, device):
        ids, mask = self._enc.tokenizer(texts, return_mask=True, add_special_tokens=True)
        context = self._enc(texts, device)
        which = 'prompt' if 'ids_prompt' not in self._rec.values else 'neg'
        self._rec('ids_' + which, ids)
        self._rec('mask_' + which, mask)
        self._rec('context' if which == 'prompt' else 'context_null', context[0])
        return context


class VaeTap:
    def __init__(self, vae, rec):
        self._vae, self._rec = vae, rec

    def __getattr__(self, name):
        return getattr(self._vae, name)

    def encode(self, videos):
        return self._vae.encode(videos)

    def decode(self, zs):
        self._rec('x0', zs[0])
        videos = self._vae.decode(zs)
        self._rec('video', videos[0])
        return videos


class Recorder:
    def __init__(self):
        self.values, self.steps = {}, []

    def __call__(self, name, value, once=True):
        if once and name in self.values:
            return
        self.values[name] = value.detach().cpu() if hasattr(value, 'detach') else value


def dump_pipeline(args, out, standins, cfg, attention):
    import torch
    spec = TASKS[args.task]
    module = importlib.import_module(spec['module'])
    t5mod = sys.modules['wan.modules.t5']
    vae_mod = sys.modules['wan.modules.vae2_1' if spec['vae'] == '2.1' else 'wan.modules.vae2_2']
    rec = Recorder()
    proxy = TorchInPipeline(torch, args.device, args.dtype == 'float32', rec)
    model_mod = sys.modules['wan.modules.model']

    class DitLoader:  # WanModel.from_pretrained, plus text_dim for reduced checkpoints
        @staticmethod
        def from_pretrained(path, subfolder=None, **kw):
            folder = os.path.join(path, subfolder) if subfolder else path
            return model_mod.WanModel.from_pretrained(path, subfolder=subfolder, **dit_overrides(folder), **kw)

    float32 = args.dtype == 'float32'
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(module, 'torch', proxy))
        stack.enter_context(patched(module, 'WanModel', DitLoader))
        stack.enter_context(patched(t5mod, 'umt5_xxl', t5_builder(os.path.join(args.ckpt_dir, cfg.t5_checkpoint))))
        stack.enter_context(patched(vae_mod, '_video_vae', vae_builder(spec['vae'])))
        device_id = int(args.device.split(':')[1]) if ':' in args.device else 0
        pipe = getattr(module, spec['cls'])(config=cfg, checkpoint_dir=args.ckpt_dir, device_id=device_id)
    experts = ([('high_noise_model', 1), ('low_noise_model', 0)] if spec['experts'] != (None,) else [('model', 0)])
    if float32:
        pipe.text_encoder.model.float()
    round_to_bf16(pipe.text_encoder.model)
    for attr, _ in experts:
        round_to_bf16(getattr(pipe, attr))
    pipe.text_encoder = TextEncoderTap(pipe.text_encoder, rec)
    pipe.vae = VaeTap(pipe.vae, rec)

    steps = []  # per step: latent_in, t_model, expert, cond, uncond (the two DiT calls), noise_pred, step_out
    for attr, expert in experts:
        m = getattr(pipe, attr)

        def forward(x, t, context, seq_len, y=None, _official=m.forward, _expert=expert):
            result = _official(x, t=t, context=context, seq_len=seq_len, y=y)
            if not steps or 'uncond' in steps[-1]:
                steps.append({'latent_in': x[0].detach().cpu(), 't_model': t.detach().cpu().reshape(-1),
                              'expert': _expert, 'cond': result[0].detach().cpu()})
            else:
                steps[-1]['uncond'] = result[0].detach().cpu()
            return result

        m.forward = forward

    schedulers = [getattr(module, n) for n in ('FlowUniPCMultistepScheduler', 'FlowDPMSolverMultistepScheduler')]

    def step_tap(official):
        def step(self, model_output, timestep, sample, *a, **kw):
            result = official(self, model_output, timestep, sample, *a, **kw)
            rec('timesteps', self.timesteps)
            rec('sigmas', self.sigmas)
            steps[-1]['noise_pred'] = model_output[0].detach().cpu()
            steps[-1]['step_out'] = result[0][0].detach().cpu()
            return result
        return step

    image = None
    kwargs = dict(frame_num=args.frame_num, shift=args.shift if args.shift is not None else cfg.sample_shift,
                  sample_solver=args.sample_solver, sampling_steps=args.steps if args.steps else cfg.sample_steps,
                  guide_scale=cfg.sample_guide_scale, n_prompt='', seed=args.seed, offload_model=args.device != 'cpu')
    if args.image:
        from PIL import Image
        image = Image.open(args.image).convert('RGB')
        kwargs.update(img=image, max_area=args.max_area)
    elif args.task == 'i2v-A14B':
        sys.exit('pipeline for i2v-A14B needs --image')
    else:
        kwargs['size'] = args.size
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(module, 'torch', proxy))
        for s in schedulers:
            stack.enter_context(patched(s, 'step', step_tap(s.step)))
        video = pipe.generate(args.prompt, **kwargs)
    v = rec.values
    frames = ((video.detach().cpu().float().clamp(-1, 1) + 1) / 2 * 255).type(torch.uint8).permute(1, 2, 3, 0)
    boundary = getattr(cfg, 'boundary', None)
    g = cfg.sample_guide_scale
    guide = [(g[1] if int(s['t_model'][0]) >= boundary * cfg.num_train_timesteps else g[0]) if isinstance(g, (tuple, list)) else g
             for s in steps]
    stack_of = lambda key: torch.stack([s[key] for s in steps])
    mids = {'latent_in': entry(stack_of('latent_in')),
            't_model': entry(stack_of('t_model') if steps[0]['t_model'].numel() > 1 else stack_of('t_model').reshape(-1)),
            'expert': entry(torch.tensor([s['expert'] for s in steps])),
            'noise_pred_cond': entry(stack_of('cond')), 'noise_pred_uncond': entry(stack_of('uncond')),
            'noise_pred': entry(stack_of('noise_pred')), 'step_out': entry(stack_of('step_out'))}
    if isinstance(g, (tuple, list)):
        mids['guide_scale'] = entry(torch.tensor(guide, dtype=torch.float32))
    inputs = {'seed': entry(torch.tensor([args.seed])), 'noise': entry(v['noise'])}
    if image is not None:
        inputs['image'] = entry(torch.tensor(list(image.getdata()), dtype=torch.long).reshape(image.height, image.width, 3))
    outputs = {'ids_prompt': entry(v['ids_prompt']), 'mask_prompt': entry(v['mask_prompt']),
               'ids_neg': entry(v['ids_neg']), 'mask_neg': entry(v['mask_neg']),
               'context': entry(v['context']), 'context_null': entry(v['context_null']),
               'timesteps': entry(v['timesteps'], 'I64'), 'sigmas': entry(v['sigmas']),
               'x0': entry(v['x0']), 'video': entry(video), 'frames': entry(frames)}
    mode = 'i2v' if image is not None else 't2v'
    config = dict(task=args.task, mode=mode, prompt=args.prompt, n_prompt='', n_prompt_used=cfg.sample_neg_prompt,
                  seed=args.seed, frame_num=args.frame_num, sample_solver=args.sample_solver,
                  sampling_steps=kwargs['sampling_steps'], shift=kwargs['shift'],
                  guide_scale=list(g) if isinstance(g, (tuple, list)) else g, boundary=boundary,
                  num_train_timesteps=cfg.num_train_timesteps, text_len=cfg.text_len, vae_stride=list(cfg.vae_stride),
                  patch_size=list(cfg.patch_size), sample_fps=cfg.sample_fps, offload_model=kwargs['offload_model'],
                  latent_shape=list(v['noise'].shape), video_shape=list(video.shape), dtype=args.dtype)
    if image is not None:
        config.update(max_area=args.max_area, image_hw=[image.height, image.width])
    else:
        config['size'] = list(args.size)
    name = f'pipeline.{spec["short"]}' + ('_i2v' if args.task == 'ti2v-5B' and image is not None else '')
    target = os.path.join(out, name)
    os.makedirs(target, exist_ok=True)
    link = os.path.join(target, 'ckpt')
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.abspath(args.ckpt_dir), link)  # the pipeline kinds read <fixture>/ckpt
    notes = (f'{spec["cls"]}.generate() of the official code (n_prompt="" -> the config\'s negative prompt, '
             'guide_scale = the config\'s sample_guide_scale) on the checkpoint that ckpt/ links to. Noise from '
             'torch.Generator().manual_seed(seed) on the CPU (in.noise), as the engine reproduces. Per step i: '
             'mid.latent_in[i] = the DiT input, mid.t_model[i] its timestep, mid.noise_pred_cond / _uncond the two '
             'DiT calls, mid.noise_pred the guided prediction, mid.step_out the scheduler output; out.x0 = the '
             'latent handed to vae.decode; out.video = generate()\'s result; out.frames = ((clamp(video) + 1) / 2 '
             '* 255) truncated to uint8, [T, H, W, 3]. Same semantics as the bundled pipeline.* fixtures.')
    write_fixture(target, f'pipeline.{spec["short"]}', config, inputs, outputs, mids, notes,
                  reference_text(args, standins, attention), ['ckpt'], tolerances(args, 'pipeline'))
    print(f'{name}: video {list(video.shape)}, {len(steps)} steps', flush=True)


# ---------------------------------------------------------------------------------------------

def parse_ints(text, n, what):
    vals = [int(v) for v in text.replace('*', ',').replace('x', ',').split(',')]
    if len(vals) != n:
        raise argparse.ArgumentTypeError(f'{what}: expected {n} integers, got "{text}"')
    return vals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--wan-repo', required=True, help='an official Wan2.2 checkout (github Wan-Video/Wan2.2)')
    ap.add_argument('--ckpt_dir', '--ckpt-dir', required=True, help='the official checkpoint folder of the task')
    ap.add_argument('--task', required=True, choices=sorted(TASKS))
    ap.add_argument('--out', required=True, help='folder to write the fixture folders into')
    ap.add_argument('--kinds', default=','.join(KINDS), help=f'comma list of {", ".join(KINDS)} (default: all)')
    ap.add_argument('--device', default='cuda', help='cpu, cuda or cuda:N (default cuda)')
    ap.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'],
                    help='float32 (default): a precise reference; bfloat16: as the official GPU run (autocast)')
    ap.add_argument('--tolerances', default='fullsize', choices=['fullsize', 'builtin'],
                    help='fullsize (default): write the README\'s bounds into case.json; builtin: none, verify uses '
                         'the tight bounds of the bundled tiny fixtures')
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--prompt', default='Two anthropomorphic cats in comfy boxing gear fight on a spotlighted stage.')
    ap.add_argument('--expert', default='both', choices=['high', 'low', 'both'], help='A14B DiT experts to dump (dit)')
    ap.add_argument('--dit-latent', default='3,16,24', type=lambda s: parse_ints(s, 3, '--dit-latent'),
                    help='DiT latent frames,height,width (default 3,16,24: 288 tokens)')
    ap.add_argument('--dit-context-len', type=int, default=24, help='random context rows (default 24)')
    ap.add_argument('--dit-seq-pad', type=int, default=0, help='padding tokens beyond the real ones (default 0)')
    ap.add_argument('--timestep', type=int, default=None, help='DiT timestep (default 950 high, 500 low, 700 ti2v)')
    ap.add_argument('--vae-latent', default='3,16,16', type=lambda s: parse_ints(s, 3, '--vae-latent'),
                    help='VAE latent frames,height,width (default 3,16,16: 9 frames of 128x128 / 256x256)')
    ap.add_argument('--size', default='832*480', type=lambda s: parse_ints(s, 2, '--size'), help='pipeline WIDTH*HEIGHT')
    ap.add_argument('--frame-num', '--frame_num', type=int, default=5, help='pipeline frames, 4n+1 (default 5)')
    ap.add_argument('--steps', '--sample_steps', type=int, default=10, help='pipeline sampling steps (default 10)')
    ap.add_argument('--shift', '--sample_shift', type=float, default=None, help='default: the task config\'s')
    ap.add_argument('--sample-solver', '--sample_solver', default='unipc', choices=['unipc', 'dpm++'])
    ap.add_argument('--image', help='pipeline input image (i2v-A14B: required; ti2v-5B: image mode)')
    ap.add_argument('--max-area', type=int, default=832 * 480, help='pipeline image mode: target area (default 832*480)')
    ap.add_argument('--threads', type=int, default=os.cpu_count(), help='CPU threads (device cpu)')
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(',') if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f'--kinds: unknown {", ".join(bad)} (known: {", ".join(KINDS)})')

    import torch
    torch.set_num_threads(args.threads)
    if args.dtype == 'float32':
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('--device cuda: this torch has no CUDA device (use --device cpu)')
    standins = import_official(args.wan_repo)
    if standins:
        print(f'note: using stand-ins for {", ".join(standins)} (not installed; see tools/reference/standins)', flush=True)
    attention = install_attention(args.dtype == 'float32')
    cfg = task_config(args)
    os.makedirs(args.out, exist_ok=True)
    if 'dit' in kinds:
        dump_dit(args, args.out, standins, attention)
    if 't5' in kinds:
        dump_t5(args, args.out, standins, cfg)
    if 'vae_decode' in kinds:
        dump_vae(args, args.out, standins, cfg, 'decode')
    if 'vae_encode' in kinds:
        dump_vae(args, args.out, standins, cfg, 'encode')
    if 'pipeline' in kinds:
        dump_pipeline(args, args.out, standins, cfg, attention)
    print(f'done: npx wan verify {args.out}')


if __name__ == '__main__':
    main()
