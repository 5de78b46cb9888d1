"""PyTorch side of `npm run bench -- pipeline`: the OFFICIAL Wan2.2 pipeline (WanT2V / WanTI2V of an
official checkout, imported, not copied) generating from a pipeline fixture's checkpoint folder with the
fixture's prompt, seed, size, frames, solver, steps, shift and guidance, on the CPU in float32, timed per
stage. Prints one JSON object.

The official modules are imported through tools/reference/dump_fixtures.py (the same patches: stand-ins
for packages that are not installed, torch 1.13 shims, the CPU generator, cuda -> cpu, models sized from
the checkpoint). Stages: `load` = the pipeline's constructor (umT5, VAE and DiT weights read), once;
per generate() run, `text` = the two text-encoder calls (prompt, negative prompt), `decode` = vae.decode,
`denoise` = the rest of generate() (noise, scheduler, every DiT call and solver step), `generate` = the
generate() call, `total` = load + generate (the engine's generate() loads the weights itself, so its
total spans the same work). One untimed warm-up run, then the median of --runs runs. The video is
compared with the fixture's out.video (video_rel_l2_vs_fixture), to show it is the same job.

usage: /usr/bin/python3 bench/pipeline_torch.py --wan-repo DIR [--fixture DIR] [--runs N] [--threads N]
"""
import argparse
import contextlib
import importlib
import json
import os
import statistics
import sys
import struct
import time
import types
import warnings

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tools', 'reference'))
import dump_fixtures as ref  # noqa: E402

KINDS = {'pipeline.t2v': 't2v-A14B', 'pipeline.ti2v': 'ti2v-5B'}


def fixture_tensor(folder, name):
    """One F32 tensor of the fixture's io.safetensors, as a torch tensor."""
    import torch
    with open(os.path.join(folder, 'io.safetensors'), 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        e = header[name]
        assert e['dtype'] == 'F32', e
        f.seek(8 + n + e['data_offsets'][0])
        raw = bytearray(f.read(e['data_offsets'][1] - e['data_offsets'][0]))
    return torch.frombuffer(raw, dtype=torch.float32).reshape(e['shape'])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--wan-repo', required=True, help='an official Wan2.2 checkout')
    ap.add_argument('--fixture', default=os.path.join(HERE, '..', 'test', 'fixtures', 'pipeline.t2v'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    args = ap.parse_args()
    with open(os.path.join(args.fixture, 'case.json'), encoding='utf-8') as f:
        case = json.load(f)
    c = case['config']
    if case['kind'] not in KINDS or 'image' in case.get('inputs', []):
        sys.exit(f'{args.fixture}: a text-only pipeline.t2v / pipeline.ti2v fixture is needed (got {case["kind"]})')

    import torch
    # torch without CUDA warns that the official code's autocast('cuda') is disabled
    warnings.filterwarnings('ignore', message='.*CUDA is not available.*')
    torch.set_num_threads(args.threads)
    standins = ref.import_official(args.wan_repo)
    ref.install_attention(True)
    ckpt = os.path.join(args.fixture, 'ckpt')
    task = c['task']
    opts = types.SimpleNamespace(task=task, ckpt_dir=ckpt)
    cfg = ref.task_config(opts)
    spec = ref.TASKS[task]
    module = importlib.import_module(spec['module'])
    module.tqdm = lambda it, **kw: it  # no progress bar on stderr
    t5mod = sys.modules['wan.modules.t5']
    vae_mod = sys.modules['wan.modules.vae2_1' if spec['vae'] == '2.1' else 'wan.modules.vae2_2']
    model_mod = sys.modules['wan.modules.model']
    proxy = ref.TorchInPipeline(torch, 'cpu', True, ref.Recorder())

    class DitLoader:
        @staticmethod
        def from_pretrained(path, subfolder=None, **kw):
            folder = os.path.join(path, subfolder) if subfolder else path
            return model_mod.WanModel.from_pretrained(path, subfolder=subfolder, **ref.dit_overrides(folder), **kw)

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(ref.patched(module, 'torch', proxy))
        stack.enter_context(ref.patched(module, 'WanModel', DitLoader))
        stack.enter_context(ref.patched(t5mod, 'umt5_xxl', ref.t5_builder(os.path.join(ckpt, cfg.t5_checkpoint))))
        stack.enter_context(ref.patched(vae_mod, '_video_vae', ref.vae_builder(spec['vae'])))
        pipe = getattr(module, spec['cls'])(config=cfg, checkpoint_dir=ckpt, device_id=0)
    pipe.text_encoder.model.float()  # float32 throughout, as the engine's f32 activations
    load_s = time.perf_counter() - t0

    clock = {'text': 0.0, 'decode': 0.0}
    enc, vae_decode = pipe.text_encoder, pipe.vae.decode

    class TimedEncoder:
        def __getattr__(self, name):
            return getattr(enc, name)

        def __call__(self, texts, device):
            s = time.perf_counter()
            out = enc(texts, device)
            clock['text'] += time.perf_counter() - s
            return out

    def timed_decode(zs):
        s = time.perf_counter()
        out = vae_decode(zs)
        clock['decode'] += time.perf_counter() - s
        return out

    pipe.text_encoder = TimedEncoder()
    pipe.vae.decode = timed_decode
    g = c['guide_scale']
    size = c.get('size') or [c['latent_shape'][3] * cfg.vae_stride[2], c['latent_shape'][2] * cfg.vae_stride[1]]
    kwargs = dict(size=tuple(size), frame_num=c['frame_num'], shift=c['shift'], sample_solver=c['sample_solver'],
                  sampling_steps=c['sampling_steps'], guide_scale=tuple(g) if isinstance(g, list) else g,
                  n_prompt=c.get('n_prompt', ''), seed=c['seed'], offload_model=False)
    samples = []
    for r in range(args.runs + 1):
        clock.update(text=0.0, decode=0.0)
        s = time.perf_counter()
        with ref.patched(module, 'torch', proxy):
            video = pipe.generate(c['prompt'], **kwargs)
        total = time.perf_counter() - s
        if r > 0:
            samples.append(dict(text=clock['text'], denoise=total - clock['text'] - clock['decode'],
                                decode=clock['decode'], generate=total, total=load_s + total))
        print(f'{"warm-up" if r == 0 else f"run {r}"}: {total:.3f} s', file=sys.stderr, flush=True)
    med = {k: statistics.median(x[k] for x in samples) for k in samples[0]}
    # the same job as the fixture (and so as the engine's run): the video against out.video
    ref_video = fixture_tensor(args.fixture, 'out.video').double()
    rel = float((video.double() - ref_video).norm() / ref_video.norm())
    print(json.dumps({'task': task, 'fixture': os.path.abspath(args.fixture), 'runs': args.runs, 'load': load_s, **med,
                      'video_shape': list(video.shape), 'video_rel_l2_vs_fixture': rel, 'threads': torch.get_num_threads(), 'torch': torch.__version__,
                      'standins': standins}))


if __name__ == '__main__':
    main()
