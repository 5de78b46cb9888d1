"""PyTorch side of `npm run bench -- vae`: times the official WanVAE_.decode (wan/modules/vae2_1.py or
vae2_2.py of an official Wan2.2 checkout, loaded by file path so that wan/__init__ and its
dependencies are not needed) with the official architecture and PyTorch's default random init,
float32 on the CPU, after one untimed decode of the first latent frame. Prints one JSON object per line: version, latent shape, seconds, CPU seconds.

usage: python3 bench/vae_torch.py --wan-repo DIR --version 2.1|2.2 --shape T,h,w [--shape ...] [--threads N]
"""
import argparse
import importlib.util
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

if not hasattr(F, 'scaled_dot_product_attention'):
    # torch < 2.0: the attention the VAE calls (no mask, no dropout, scale 1/sqrt(d)).
    def _sdpa(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v

    F.scaled_dot_product_attention = _sdpa


def load_module(repo, version):
    name = 'vae2_1' if version == '2.1' else 'vae2_2'
    path = os.path.join(repo, 'wan', 'modules', name + '.py')
    if not os.path.isfile(path):
        sys.exit(f'{path}: not found (--wan-repo must be an official Wan2.2 checkout)')
    spec = importlib.util.spec_from_file_location('wan_' + name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(mod, version):
    # The configurations of Wan2_1_VAE / Wan2_2_VAE (their _video_vae defaults and arguments).
    common = dict(dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
    if version == '2.1':
        model = mod.WanVAE_(dim=96, z_dim=16, **common)
    else:
        model = mod.WanVAE_(dim=160, dec_dim=256, z_dim=48, **common)
    return model.eval().requires_grad_(False)


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--wan-repo', required=True)
    ap.add_argument('--version', choices=['2.1', '2.2'], required=True)
    ap.add_argument('--shape', action='append', required=True, help='latent T,h,w')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=os.cpu_count(), help='intra-op threads (default: every core; OpenMP may default to 1)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build(load_module(args.wan_repo, args.version), args.version)
    z_dim = model.z_dim
    for s in args.shape:
        t, h, w = (int(v) for v in s.split(','))
        z = torch.randn(1, z_dim, t, h, w)
        with torch.no_grad():
            model.decode(z[:, :, :1], [0.0, 1.0])  # warm-up (first-call allocations), as the TS side does
            t0, c0 = time.perf_counter(), cpu_seconds()
            out = model.decode(z, [0.0, 1.0])
            seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        print(json.dumps({'version': args.version, 'latent': [z_dim, t, h, w], 'frames': out.shape[2], 'seconds': seconds,
                          'cpuSeconds': cpu, 'threads': torch.get_num_threads(), 'torch': torch.__version__}), flush=True)


if __name__ == '__main__':
    main()
